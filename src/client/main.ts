/** The `migrate` CLI. One file per command under ./commands. */
import { Command } from 'commander';
import { registerPlan } from './commands/plan.js';
import { registerWorker } from './commands/worker.js';
import { registerDev } from './commands/dev.js';
import { registerDemo } from './commands/demo.js';
import { registerBackup } from './commands/backup.js';
import { registerRestore } from './commands/restore.js';
import { registerDeploy } from './commands/deploy.js';
import { registerStatus } from './commands/status.js';
import { registerRollback } from './commands/rollback.js';
import { registerStart } from './commands/start.js';
import { registerControl } from './commands/control.js';
import { registerBatchStatus } from './commands/batch-status.js';
import { registerBatchRollback } from './commands/batch-rollback.js';

const program = new Command('migrate')
  .description('deploy, migrate, back up and roll back the multi-agent system across its hosts, on Temporal')
  .showHelpAfterError()
  .exitOverride((err) => {
    // commander's own usage errors (unknown option, missing argument) are bad input: exit 2.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
    throw err;
  });

registerPlan(program);
registerWorker(program);
registerDev(program);
registerDemo(program);
registerBackup(program);
registerRestore(program);
registerDeploy(program);
registerStatus(program);
registerRollback(program);
registerStart(program);
registerControl(program);
registerBatchStatus(program);
registerBatchRollback(program);

// `migrate status|rollback|confirm batch-N` and `… RELEASE` share a verb; a batch name goes to the
// batch commands (and `status all` too), anything else is a release.
const argv = [...process.argv];
if (['status', 'rollback', 'confirm'].includes(argv[2] ?? '') && /^batch-\d+$/.test(argv[3] ?? '')) argv[2] = `batch-${argv[2]}`;
if (argv[2] === 'status' && argv[3] === 'all') argv[2] = 'batch-status';

try {
  await program.parseAsync(argv);
} catch (err) {
  if (!(err && typeof err === 'object' && 'code' in err && String((err as { code: string }).code).startsWith('commander.'))) throw err;
}
