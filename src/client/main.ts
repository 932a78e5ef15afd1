/**
 * The `migrate` CLI: one file per command under ./commands, each a thin layer over src/ops (parse
 * and check the arguments, call the operation, print). What a command is given is what it gets:
 * no argv rewriting, no hidden commands.
 *
 * Only the command named is loaded (its file, and what it imports): a bad call is refused in well
 * under a second. With no command, or one that does not exist, every command is registered, so the
 * help lists them all and a typo gets its "did you mean".
 */
import { Command, type CommanderError } from 'commander';

type Register = (program: Command) => void;

const COMMANDS: Record<string, () => Promise<Register>> = {
  plan: async () => (await import('./commands/plan.js')).registerPlan,
  worker: async () => (await import('./commands/worker.js')).registerWorker,
  dev: async () => (await import('./commands/dev.js')).registerDev,
  demo: async () => (await import('./commands/demo.js')).registerDemo,
  backup: async () => (await import('./commands/backup.js')).registerBackup,
  restore: async () => (await import('./commands/restore.js')).registerRestore,
  deploy: async () => (await import('./commands/deploy.js')).registerDeploy,
  start: async () => (await import('./commands/start.js')).registerStart,
  status: async () => (await import('./commands/status.js')).registerStatus,
  rollback: async () => (await import('./commands/rollback.js')).registerRollback,
  confirm: async () => (await import('./commands/confirm.js')).registerConfirm,
  pause: async () => (await import('./commands/control.js')).registerControl,
  resume: async () => (await import('./commands/control.js')).registerControl,
  approve: async () => (await import('./commands/control.js')).registerControl,
  abort: async () => (await import('./commands/control.js')).registerControl,
  import: async () => (await import('./commands/import.js')).registerImport,
  'codec-server': async () => (await import('./commands/codec-server.js')).registerCodecServer,
  health: async () => (await import('./commands/health.js')).registerHealth,
  failback: async () => (await import('./commands/failback.js')).registerFailback,
};

const program = new Command('migrate')
  .description('deploy, migrate, back up and roll back the multi-agent system across its hosts, on Temporal')
  .showHelpAfterError()
  .exitOverride((err) => {
    // commander's own usage errors (unknown option, missing argument) are bad input: exit 2.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
    // No command given (`migrate`, `migrate backup`): the help was printed; say what is missing.
    if (err.code === 'commander.help' && err.exitCode !== 0) process.stderr.write('error: no command given\n      fix: give one of the commands listed above\n');
    throw err;
  });

const named = process.argv[2];
const loaders = named !== undefined && Object.hasOwn(COMMANDS, named) ? [COMMANDS[named]!] : Object.values(COMMANDS);
const registered = new Set<Register>();
for (const load of loaders) {
  const register = await load();
  if (registered.has(register)) continue;
  registered.add(register);
  register(program);
}

/** The full name of a command, e.g. `migrate backup schedule`. */
const fullName = (cmd: Command): string => (cmd.parent ? `${fullName(cmd.parent)} ${cmd.name()}` : cmd.name());

/** The fix for one of commander's usage errors, under its `error:` line. */
function usageFix(cmd: Command, message: string): string {
  const help = `\`${fullName(cmd)} --help\``;
  if (/unknown option/.test(message)) return `remove it or correct its spelling: ${help} lists the options`;
  if (/unknown command/.test(message)) return `use one of the commands ${help} lists`;
  if (/missing required argument '([^']+)'/.test(message)) return `give the ${/'([^']+)'/.exec(message)![1]} argument: ${fullName(cmd)} ${cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`)).join(' ')}`;
  if (/too many arguments/.test(message)) return `give only ${cmd.registeredArguments.map((a) => `<${a.name()}>`).join(' ') || 'options'} (quote a value that has spaces)`;
  if (/argument missing/.test(message)) return 'give the option its value right after it';
  if (/required option/.test(message)) return `add it: ${help} says what it takes`;
  return `see ${help}`;
}

/** Every usage error gets a fix line, like the problems of the error handler. */
function withFixes(cmd: Command): void {
  cmd.configureOutput({ outputError: (str, write) => write(`${str}      fix: ${usageFix(cmd, str)}\n`) });
  for (const sub of cmd.commands) withFixes(sub);
}
withFixes(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (!(err && typeof err === 'object' && 'code' in err && String((err as CommanderError).code).startsWith('commander.'))) throw err;
}
