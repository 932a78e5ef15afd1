#!/bin/sh
# Modes: healthy | unhealthy (listens, answers 503) | crash (exits 1 after AGENT_CRASH_AFTER s)
#        | slow (waits AGENT_START_DELAY s before listening; also honoured in the other modes).
mkdir -p /run/agent
echo "$AGENT_MODE" > /run/agent/mode
echo "$AGENT_LATENCY_MS" > /run/agent/latency_ms
echo "${AGENT_ERROR_PERCENT:-0}" > /run/agent/error_percent
date +%s > /run/agent/started_at

if [ "$AGENT_MODE" = crash ]; then
  sleep "$AGENT_CRASH_AFTER"
  echo "agent: crashing as told (AGENT_MODE=crash)" >&2
  exit 1
fi
[ "$AGENT_START_DELAY" != 0 ] && sleep "$AGENT_START_DELAY"

pids=""
for port in $AGENT_PORTS; do
  nc -ll -p "$port" -e /agent/handler.sh &
  pids="$pids $!"
done
echo "agent: version $AGENT_VERSION listening on $AGENT_PORTS" >&2
trap 'kill $pids 2>/dev/null; exit 0' TERM INT
wait
