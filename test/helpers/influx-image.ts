/**
 * An InfluxDB 1.x image for the tests, FROM scratch (through ensureHostImage): Debian's influxd and
 * influx binaries (packages influxdb and influxdb-client, installed by scripts/setup.sh) with the
 * libraries ldd lists, busybox-static for a shell, and a config whose backup/restore RPC listens on
 * 127.0.0.1:8088 inside the container (as the official influxdb:1.x images do). Built once, kept.
 */
import type Dockerode from 'dockerode';
import { ensureHostImage } from './host-image.js';

export const INFLUX_IMAGE = 'agent-migrate/test-influxdb:1.6';

const CONFIG = `reporting-enabled = false
# The backup/restore RPC: reachable only from inside the container (influxd backup|restore -host 127.0.0.1:8088).
bind-address = "127.0.0.1:8088"

[meta]
  dir = "/var/lib/influxdb/meta"

[data]
  dir = "/var/lib/influxdb/data"
  wal-dir = "/var/lib/influxdb/wal"
  query-log-enabled = false

[http]
  bind-address = ":8086"
  log-enabled = false

[monitor]
  store-enabled = false
`;

export function ensureInfluxImage(docker: Dockerode): Promise<string> {
  return ensureHostImage(docker, {
    tag: INFLUX_IMAGE,
    binaries: [process.env.INFLUXD_PATH ?? '/usr/bin/influxd', process.env.INFLUX_PATH ?? '/usr/bin/influx'],
    write: { '/etc/influxdb/influxdb.conf': CONFIG },
    dockerfile: [
      'RUN ["/bin/sh", "-c", "mkdir -p /tmp /var/lib/influxdb && chmod 1777 /tmp"]',
      'EXPOSE 8086',
      'ENTRYPOINT ["/usr/bin/influxd", "-config", "/etc/influxdb/influxdb.conf"]',
    ],
  });
}
