#!/bin/sh
# One HTTP/1.0 exchange per connection (nc -ll -e). Every path answers with the agent's health.
read -r method path proto
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
done
mode=$(cat /run/agent/mode 2>/dev/null || echo healthy)
latency=$(cat /run/agent/latency_ms 2>/dev/null || echo 0)
[ "$latency" -gt 0 ] 2>/dev/null && usleep $((latency * 1000))
errors=$(cat /run/agent/error_percent 2>/dev/null || echo 0)
if [ "$errors" -gt 0 ] 2>/dev/null && [ $((RANDOM % 100)) -lt "$errors" ]; then
  status="500 Internal Server Error"; body="{\"status\":\"error\",\"version\":\"$AGENT_VERSION\"}"
elif [ "$mode" = healthy ] || [ "$mode" = slow ]; then
  status="200 OK"; body="{\"status\":\"ok\",\"version\":\"$AGENT_VERSION\",\"path\":\"$path\"}"
else
  status="503 Service Unavailable"; body="{\"status\":\"$mode\",\"version\":\"$AGENT_VERSION\"}"
fi
printf 'HTTP/1.0 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$status" "${#body}" "$body"
