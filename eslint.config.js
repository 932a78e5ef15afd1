// Lint rules that guard the architecture:
//  - no floating promises anywhere (an un-awaited Docker or Temporal call is a bug);
//  - workflow code must stay deterministic: no Node builtins, no I/O packages.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'fs/promises',
  'http', 'http2', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers',
  'tls', 'tty', 'url', 'util', 'v8', 'vm', 'worker_threads', 'zlib',
];
const ioPackages = ['dockerode', 'pg', 'ioredis', 'yaml', '@temporalio/client', '@temporalio/worker', '@temporalio/activity'];

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.data/**', '.tmp/**', 'bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [
          ...nodeBuiltins.flatMap((m) => [
            { name: m, message: 'Workflow code must be deterministic: no Node builtins. Move this into an activity.' },
            { name: `node:${m}`, message: 'Workflow code must be deterministic: no Node builtins. Move this into an activity.' },
          ]),
          ...ioPackages.map((m) => ({ name: m, message: 'Workflows never touch the outside world: call an activity instead (import its type only).', allowTypeImports: true })),
        ],
      }],
      'no-restricted-globals': ['error',
        { name: 'process', message: 'No process access in workflows.' },
        { name: 'require', message: 'No require in workflows.' },
      ],
    },
  },
);
