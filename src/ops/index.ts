/**
 * The typed operations API between people (the `migrate` CLI, the demo, the benches) and Temporal:
 * workflows started by function reference, queries and updates by their exported definitions.
 */
export * from './errors.js';
export * from './changes.js';
export * from './deploys.js';
export * from './batches.js';
export * from './backups.js';
export * from './health.js';
