#!/usr/bin/env node
// The `migrate` CLI. Runs the TypeScript sources through tsx (no build step).
import { register } from 'tsx/esm/api';
register();
await import('../src/client/main.ts');
