/**
 * The `migrate` CLI: one file per command under ./commands, each a thin layer over src/ops (parse
 * and check the arguments, call the operation, print). What a command is given is what it gets:
 * no argv rewriting, no hidden commands.
 */
import { Command } from 'commander';
import { registerPlan } from './commands/plan.js';
import { registerWorker } from './commands/worker.js';
import { registerDev } from './commands/dev.js';
import { registerDemo } from './commands/demo.js';
import { registerBackup } from './commands/backup.js';
import { registerRestore } from './commands/restore.js';
import { registerDeploy } from './commands/deploy.js';
import { registerStart } from './commands/start.js';
import { registerStatus } from './commands/status.js';
import { registerRollback } from './commands/rollback.js';
import { registerConfirm } from './commands/confirm.js';
import { registerControl } from './commands/control.js';
import { registerImport } from './commands/import.js';
import { registerCodecServer } from './commands/codec-server.js';
import { registerHealth } from './commands/health.js';
import { registerFailback } from './commands/failback.js';

const program = new Command('migrate')
  .description('deploy, migrate, back up and roll back the multi-agent system across its hosts, on Temporal')
  .showHelpAfterError()
  .exitOverride((err) => {
    // commander's own usage errors (unknown option, missing argument) are bad input: exit 2.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
    throw err;
  });

for (const register of [registerPlan, registerWorker, registerDev, registerDemo, registerBackup, registerRestore,
  registerDeploy, registerStart, registerStatus, registerRollback, registerConfirm, registerControl, registerImport, registerCodecServer,
  registerHealth, registerFailback]) register(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (!(err && typeof err === 'object' && 'code' in err && String((err as { code: string }).code).startsWith('commander.'))) throw err;
}
