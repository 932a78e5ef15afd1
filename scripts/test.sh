#!/usr/bin/env bash
# Every test: lint, types, unit tests, then integration tests on a real Temporal dev server, the
# real Docker engine and this machine's PostgreSQL and Redis. Sets up a fresh machine first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
npx eslint .
npx tsc -p tsconfig.json
mkdir -p .tmp
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest-report.json "$@" || status=$?
# One plain closing line for CI: "N passed, N failed[, N skipped]".
node -e '
  const r = JSON.parse(require("fs").readFileSync(".tmp/vitest-report.json", "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' || true
exit $status
