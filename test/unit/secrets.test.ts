/** The plan's literal-secret check: each case of issue 15 item 5 is a problem with its path and fix. */
import { describe, expect, it } from 'vitest';
import { InventoryError } from '../../src/inventory/problems.js';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { commandSecrets, isSecretName, shellWords } from '../../src/plan/secrets.js';

const base = (unit: Record<string, unknown>) => ({
  version: 1,
  project: 'test',
  hosts: { h1: {} },
  services: { app: { image: 'a:1', ...unit } },
});

function problemsOf(unit: Record<string, unknown>) {
  try {
    buildPlan(parseInventory(base(unit)));
    return [];
  } catch (err) {
    if (err instanceof InventoryError) return err.problems;
    throw err;
  }
}

describe('literal secrets', () => {
  it.each([
    ['a password-only Redis URL', { environment: { CACHE: 'redis://:pw@redis:6379/0' } }, 'services.app.environment.CACHE'],
    ['a user:password URL', { environment: { DATABASE_URL: 'postgresql://u:pw@db/x' } }, 'services.app.environment.DATABASE_URL'],
    ['SECRET_KEY', { environment: { SECRET_KEY: 'x' } }, 'services.app.environment.SECRET_KEY'],
    ['AWS_SECRET_ACCESS_KEY', { environment: { AWS_SECRET_ACCESS_KEY: 'x' } }, 'services.app.environment.AWS_SECRET_ACCESS_KEY'],
    ['a *_SECRET* name', { environment: { JWT_SECRET_VALUE: 'x' } }, 'services.app.environment.JWT_SECRET_VALUE'],
    ['an *API_KEY* name', { environment: { OPENAI_API_KEY_MAIN: 'sk-1' } }, 'services.app.environment.OPENAI_API_KEY_MAIN'],
    ['a *PRIVATE_KEY* name', { environment: { SSH_PRIVATE_KEY: '-----BEGIN' } }, 'services.app.environment.SSH_PRIVATE_KEY'],
    ['a list-form variable', { environment: ['DB_PASSWORD=x'] }, 'services.app.environment.DB_PASSWORD'],
    ['a flag inside a variable', { environment: { REDIS_ARGS: '--requirepass pw' } }, 'services.app.environment.REDIS_ARGS'],
    ['--password=x', { command: ['app', '--password=x'] }, 'services.app.command[1]'],
    ['--requirepass pw', { command: ['redis-server', '--requirepass', 'pw'] }, 'services.app.command[2]'],
    ['-a pw (redis-cli)', { command: ['redis-cli', '-a', 'pw', 'ping'] }, 'services.app.command[2]'],
    ['a string command', { command: 'exec redis-server --requirepass hunter2' }, 'services.app.command'],
    ['a string command with --password=', { command: 'app --password="x y"' }, 'services.app.command'],
    ['NAME=value in a string command', { command: 'env DB_PASSWORD=x app' }, 'services.app.command'],
    ['a URL in a string command', { command: 'app --db postgres://u:pw@db/x' }, 'services.app.command'],
    ['healthcheck.test CMD-SHELL', { healthcheck: { test: ['CMD-SHELL', 'redis-cli -a pw ping'] } }, 'services.app.healthcheck.test'],
    ['healthcheck.test CMD', { healthcheck: { test: ['CMD', 'redis-cli', '-a', 'pw', 'ping'] } }, 'services.app.healthcheck.test'],
    ['healthcheck.test string', { healthcheck: { test: 'curl http://u:pw@localhost/health' } }, 'services.app.healthcheck.test'],
    ['healthcheck.exec', { healthcheck: { exec: ['mysqladmin', '--password=x', 'ping'] } }, 'services.app.healthcheck.exec'],
    ['build.args secret name', { image: undefined, build: { context: '.', args: { NPM_TOKEN: 'x' } } }, 'services.app.build.args.NPM_TOKEN'],
    ['build.args URL', { image: undefined, build: { context: '.', args: { REPO: 'https://u:pw@git.example/x' } } }, 'services.app.build.args.REPO'],
  ])('%s', (_what, unit, path) => {
    const found = problemsOf(unit);
    const p = found.find((x) => x.path === path);
    expect(p, JSON.stringify(found)).toBeDefined();
    expect(p!.fix).toMatch(/from_env|run time/);
  });

  it.each([
    ['references', { environment: { DB_PASSWORD: { from_env: 'X' }, CACHE: 'redis://redis:6379' } }],
    ['a $VAR after a secret flag', { command: 'exec redis-server --requirepass "$REDIS_PASSWORD"' }],
    ['-a outside redis-cli', { command: ['tar', '-a', 'x.tgz'] }],
    ['names that point at a secret', { environment: { POSTGRES_PASSWORD_FILE: '/run/secrets/pw', TOKEN_TTL: '3600' } }],
    ['a ${VAR} build arg', { image: undefined, build: { context: '.', args: { NPM_TOKEN: '${NPM_TOKEN}' } } }],
  ])('leaves %s alone', (_what, unit) => {
    expect(problemsOf(unit)).toEqual([]);
  });

  it('splits shell words and names secret variables', () => {
    expect(shellWords(`a "b c" 'd e' f`)).toEqual(['a', 'b c', 'd e', 'f']);
    expect(commandSecrets(['redis-cli', '-a', 'pw'])).toEqual([{ word: 2, why: expect.stringMatching(/-a/) }]);
    expect(['SECRET_KEY', 'AWS_SECRET_ACCESS_KEY', 'X_API_KEY', 'DB_PASS', 'GITHUB_TOKEN'].every(isSecretName)).toBe(true);
    expect(['PASSWORD_FILE', 'KEY', 'TOKEN_URL', 'SECRETARY_NAME'].some(isSecretName)).toBe(false);
  });
});
