/** The pure parts of isolated hosts: addresses on the bridge, and the inventory override the workers load. */
import { describe, expect, it } from 'vitest';
import { allocateAddresses } from '../../src/dev/isolated-hosts.js';
import { isolatedInventoryOverride, loopbackBackupsOverride, loopbackNatsOverride } from '../../src/dev/isolated-environment.js';

describe('allocateAddresses', () => {
  it('gives the bridge .1 and the hosts .2, .3, … in declaration order', () => {
    expect(allocateAddresses('10.231.0.0/24', 2)).toEqual({ bridge: '10.231.0.1', hosts: ['10.231.0.2', '10.231.0.3'], prefixLength: 24 });
    expect(allocateAddresses('10.231.7.77/24', 1).bridge).toBe('10.231.7.1');
  });

  it('refuses a subnet too small for the hosts, or not IPv4 CIDR', () => {
    expect(() => allocateAddresses('10.231.0.0/29', 6)).toThrow(/room for 5 hosts, not 6/);
    expect(() => allocateAddresses('10.231.0.0', 2)).toThrow(/CIDR/);
    expect(() => allocateAddresses('10.231.0.300/24', 2)).toThrow(/not an IPv4 address/);
  });
});

describe('isolatedInventoryOverride', () => {
  it('points every host at its bridge address and its own engine', () => {
    const override = isolatedInventoryOverride({
      hosts: [
        { name: 'mainpc', address: '10.231.0.2', dockerSocket: '/s/mainpc/docker.sock' },
        { name: 'pc2', address: '10.231.0.3', dockerSocket: '/s/pc2/docker.sock' },
      ],
    });
    expect(override).toEqual({
      hosts: {
        mainpc: { address: '10.231.0.2', docker: { socket: '/s/mainpc/docker.sock' } },
        pc2: { address: '10.231.0.3', docker: { socket: '/s/pc2/docker.sock' } },
      },
    });
  });
});

describe('loopbackBackupsOverride', () => {
  const pgTarget = { name: 'postgres', host: 'mainpc', via: 'tcp' as const, address: '127.0.0.1', port: 5432, database: 'agent_lightning', user: 'postgres' };
  const redisTarget = { name: 'redis', host: 'mainpc', via: 'tcp' as const, address: '10.9.0.4', port: 6379, data_dir: '/data' };
  const backups = { retention: { keep_last: 7, keep_daily: 7, keep_weekly: 4 }, postgres: [pgTarget], redis: [redisTarget], influxdb: [] };

  it('moves loopback tcp targets onto the bridge, writing each changed list whole, and names the ports to forward', () => {
    expect(loopbackBackupsOverride(backups, '10.231.0.1')).toEqual({ backups: { postgres: [{ ...pgTarget, address: '10.231.0.1' }] }, ports: [5432] });
  });

  it('changes nothing when no target is on loopback (or there are no backups)', () => {
    expect(loopbackBackupsOverride({ ...backups, postgres: [] }, '10.231.0.1')).toEqual({ ports: [] });
    expect(loopbackBackupsOverride(undefined, '10.231.0.1')).toEqual({ ports: [] });
  });
});

describe('loopbackNatsOverride', () => {
  const health = { nats: ['nats://127.0.0.1:4222', 'tls://localhost', 'nats://10.9.0.5:4223'], subjects: 'health', heartbeat: 250, lost_after: 1000 };

  it('moves the health plane\'s loopback NATS servers onto the bridge and names the ports to forward; others stay', () => {
    expect(loopbackNatsOverride(health as never, '10.231.0.1')).toEqual({ nats: ['nats://10.231.0.1:4222', 'tls://10.231.0.1:4222', 'nats://10.9.0.5:4223'], ports: [4222] });
  });

  it('changes nothing without a health plane or with no NATS on loopback', () => {
    expect(loopbackNatsOverride(undefined, '10.231.0.1')).toEqual({ ports: [] });
    expect(loopbackNatsOverride({ ...health, nats: ['nats://10.9.0.5:4223'] } as never, '10.231.0.1')).toEqual({ ports: [] });
  });
});
