// Every workflow the orchestrator queue runs. One module per runbook.
export { probeHosts, gpuStep } from './routing.js';
export { backupDatabases, verifyBackup, restoreBackup } from './backup.js';
export { deployStack, deployLock } from './deploy.js';
export { migrateBatch, migrateAgent, migrateAllBatches } from './batch.js';
export { projectLedger } from './ledger.js';
export { failoverHost, failbackHost } from './failover.js';
