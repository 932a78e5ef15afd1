#!/usr/bin/env bash
# The main job, on this one machine: a Temporal dev server with its Web UI, one worker per inventory
# host, and the demo (plan, routing, deploy, batch migration). Sets up a fresh machine first.
# Pass --keep-running to leave the Web UI up afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec ./bin/migrate.mjs demo "$@"
