/**
 * Literal secrets never enter the inventory, nor therefore any workflow input or history: the
 * inventory holds references (`{ from_env }`, `{ from_file }`) that the worker resolves on its host.
 * This finds secrets written literally in a unit's environment, command, health check or build
 * arguments. Pure.
 */
import type { Problem } from '../inventory/problems.js';
import type { Service } from '../inventory/schema.js';

/** Variable names that hold secrets: SECRET_KEY, AWS_SECRET_ACCESS_KEY, OPENAI_API_KEY, DB_PASS… */
const SECRET_NAME_RE = /PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH_?KEY|(^|_)(PASS|PWD|PW)$/i;
/** …unless the name says the value only points at the secret or describes it. */
const NOT_A_SECRET_RE = /_(FILE|PATH|DIR|URL|URI|HOST|PORT|USER|USERNAME|NAME|ID|TTL|EXPIRY|EXPIRES|TIMEOUT|ENABLED|LENGTH)$/i;
/** scheme://user:password@ and scheme://:password@ (Redis URLs carry only a password). */
const URL_CREDENTIALS_RE = /[a-z][a-z0-9+.-]*:\/\/[^/@\s:]*:([^@\s/]+)@/i;
/** Flags whose next argument is a secret. */
const SECRET_FLAG_RE = /^--?(requirepass|masterauth|password|passwd|pass|token|secret|api-?key|auth-?token|private-?key)$/i;
/** The same flags written as --flag=value. */
const SECRET_FLAG_VALUE_RE = /^--?(requirepass|masterauth|password|passwd|pass|token|secret|api-?key|auth-?token|private-?key)=(.+)$/i;
/** NAME=value inside a command (`env DB_PASSWORD=x app`, `-e API_KEY=x`). */
const ASSIGNMENT_RE = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/;

/** `$VAR` or `${VAR}`: a reference the shell (or the container) resolves, not a literal. */
const isReference = (v: string) => /^\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)$/.test(v);

export function isSecretName(name: string): boolean {
  return SECRET_NAME_RE.test(name) && !NOT_A_SECRET_RE.test(name);
}

/** The password written into a URL, if any (a `$VAR` reference is not one). */
export function urlCredential(text: string): string | undefined {
  const m = URL_CREDENTIALS_RE.exec(text);
  return m && !isReference(m[1]!) ? m[1] : undefined;
}

/** Words of a shell command line: whitespace-separated, quotes removed (enough to spot flags). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.matchAll(re)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

/** Where (the index of the word holding the secret) and why the words of a command hold a literal secret. */
export function commandSecrets(words: readonly string[]): { word: number; why: string }[] {
  const found: { word: number; why: string }[] = [];
  const push = (word: number, why: string) => found.push({ word, why });
  const literal = (v: string | undefined) => v !== undefined && v !== '' && !isReference(v);
  const redisCli = words.some((w) => /(^|\/)redis-cli$/.test(w));
  words.forEach((w, i) => {
    const next = words[i + 1];
    const flagValue = SECRET_FLAG_VALUE_RE.exec(w);
    const assignment = ASSIGNMENT_RE.exec(w);
    if (flagValue && literal(flagValue[2])) push(i, `a secret is written after "--${flagValue[1]}="`);
    else if (SECRET_FLAG_RE.test(w) && literal(next)) push(i + 1, `a secret follows "${w}" on the command line`);
    else if (redisCli && w === '-a' && literal(next)) push(i + 1, 'a secret follows redis-cli\'s "-a" on the command line');
    else if (assignment && isSecretName(assignment[1]!) && literal(assignment[2])) push(i, `a secret is assigned to ${assignment[1]} on the command line`);
    else if (urlCredential(w)) push(i, 'a credential is written into a URL on the command line');
  });
  return found;
}

/** Words of an argv whose elements may themselves be shell lines (`sh -c "…"`, CMD-SHELL). */
const wordsOf = (argv: readonly string[]) => argv.flatMap((a) => (/\s/.test(a) ? shellWords(a) : [a]));

const FROM_ENV_FIX = 'keep it in an environment variable set with { from_env: NAME } (or { from_file: /path/on/the/host }) and refer to it as "$NAME": the worker reads it on its host, so it never enters the inventory or Temporal\'s history';

/** Every literal secret of one unit (`path` is `services.NAME` or `agents.NAME`). */
export function literalSecretProblems(path: string, spec: Service): Problem[] {
  const problems: Problem[] = [];
  for (const [key, value] of Object.entries(spec.environment)) {
    if (typeof value !== 'string' || value === '' || isReference(value)) continue;
    const inUrl = urlCredential(value) !== undefined;
    if (isSecretName(key) || inUrl) {
      problems.push({
        path: `${path}.environment.${key}`,
        message: inUrl ? 'a credential is written into this URL' : 'a secret is written here as a literal value',
        fix: `write { from_env: ${key} } or { from_file: /path/on/the/host }: the worker reads it on its host, so it never enters the inventory or Temporal's history`,
      });
      continue;
    }
    for (const { why } of commandSecrets(shellWords(value))) problems.push({ path: `${path}.environment.${key}`, message: why, fix: FROM_ENV_FIX });
  }

  const command = spec.command;
  if (command) {
    // A string `command:` became ['/bin/sh', '-c', line]: report it where the operator wrote it.
    const shellForm = command.length === 3 && command[0] === '/bin/sh' && command[1] === '-c';
    const words: string[] = [];
    const argIndex: number[] = [];
    command.forEach((arg, i) => {
      for (const w of /\s/.test(arg) ? shellWords(arg) : [arg]) {
        words.push(w);
        argIndex.push(i);
      }
    });
    for (const { word, why } of commandSecrets(words)) {
      problems.push({ path: shellForm ? `${path}.command` : `${path}.command[${argIndex[word]}]`, message: why, fix: FROM_ENV_FIX });
    }
  }

  const hc = spec.healthcheck;
  for (const field of ['test', 'exec'] as const) {
    const probe = hc?.[field];
    if (probe === undefined) continue;
    const argv = typeof probe === 'string' ? [probe] : probe;
    for (const { why } of commandSecrets(wordsOf(argv))) {
      problems.push({ path: `${path}.healthcheck.${field}`, message: `${why} of the health check`, fix: `${FROM_ENV_FIX}; the health check runs inside the container, which has the variable` });
    }
  }

  for (const [key, value] of Object.entries(spec.build?.args ?? {})) {
    if (value === '' || isReference(value)) continue;
    if (isSecretName(key) || urlCredential(value) !== undefined) {
      problems.push({
        path: `${path}.build.args.${key}`,
        message: 'a secret is passed as a build argument: build arguments stay in the image\'s history, readable by anyone who can pull it',
        fix: `remove it from build.args; give it at run time through environment (${key}: { from_env: ${key} }), or to the build as a BuildKit secret (RUN --mount=type=secret)`,
      });
    }
  }
  return problems;
}
