/** The health plane's judgement (src/health/judge.ts), failover placement (src/plan/failover.ts) and the `health:` section. Pure. */
import { describe, expect, it } from 'vitest';
import { InventoryError, parseInventory } from '../../src/inventory/load.js';
import { aggregate, judgeHost, timeHeartbeat, transitions, type Heartbeat, type HeartbeatTiming, type Observations, type Reach, type UnitReading } from '../../src/health/judge.js';
import { planFailback, planFailover } from '../../src/plan/failover.js';
import { peerPorts } from '../../src/health/plane.js';

const hb = (host: string, peers: Record<string, Reach> = {}): Heartbeat => ({
  host, at: 0, seq: 1, worker: { pid: 1, identity: `${host}@x:1` }, engine: { ok: true }, peers, units: { total: 0, healthy: 0 },
});

function obs(now: number, beats: [Heartbeat, number][], reach: [string, Reach][] = [], units: [UnitReading, number][] = []): Observations {
  return {
    now, lostAfterMs: 1000, hosts: ['mainpc', 'pc2'],
    heartbeats: new Map(beats.map(([h, at]) => [h.host, { heartbeat: h, receivedAt: at }])),
    reach: new Map(reach),
    units: units.map(([reading, receivedAt]) => ({ reading, receivedAt })),
  };
}

const reading = (unit: string, host: string, ok: boolean, criticality: UnitReading['criticality'] = 'medium'): UnitReading => ({ unit, host, ok, criticality, at: 0, since: 0 });

describe('judging a host', () => {
  it('is up while its heartbeats are fresh, whatever else is said', () => {
    expect(judgeHost('pc2', obs(10_500, [[hb('pc2'), 10_000]], [['pc2', 'unreachable']])).state).toBe('up');
  });

  it('silent and unreachable, with no one reaching it: host lost', () => {
    const v = judgeHost('pc2', obs(12_000, [[hb('mainpc', { pc2: 'unreachable' }), 11_900], [hb('pc2'), 10_000]], [['pc2', 'unreachable']]));
    expect(v).toMatchObject({ state: 'lost', ageMs: 2000 });
    expect(v.reason).toContain('no heartbeat for 2.0 s');
  });

  it('silent but its address refuses the worker port: worker lost, not host lost', () => {
    expect(judgeHost('pc2', obs(12_000, [[hb('pc2'), 10_000]], [['pc2', 'refused']])).state).toBe('worker-lost');
  });

  it('silent but its worker still accepts a connection: partitioned from the plane', () => {
    expect(judgeHost('pc2', obs(12_000, [[hb('pc2'), 10_000]], [['pc2', 'accepted']])).state).toBe('partitioned');
  });

  it('unreachable from here but a host that still publishes reaches it: partitioned, with the witness named', () => {
    const v = judgeHost('pc2', obs(12_000, [[hb('mainpc', { pc2: 'accepted' }), 11_900], [hb('pc2'), 10_000]], [['pc2', 'unreachable']]));
    expect(v.state).toBe('partitioned');
    expect(v.reason).toContain('mainpc');
  });

  it('a witness that is itself silent does not count', () => {
    const v = judgeHost('pc2', obs(12_000, [[hb('mainpc', { pc2: 'accepted' }), 9_000], [hb('pc2'), 10_000]], [['pc2', 'unreachable']]));
    expect(v.state).toBe('lost');
  });

  it('a host never seen and unreachable is lost', () => {
    expect(judgeHost('pc2', obs(1000, [], [['pc2', 'unreachable']]))).toMatchObject({ state: 'lost', reason: expect.stringContaining('no heartbeat ever seen') });
  });
});

describe('the aggregate view', () => {
  it('marks a lost host\'s units stale and is down; a critical unhealthy unit makes it down too', () => {
    const v = aggregate(obs(12_000, [[hb('mainpc'), 11_900], [hb('pc2'), 10_000]], [['pc2', 'unreachable']], [
      [reading('api', 'mainpc', true, 'critical'), 11_800], [reading('Scout', 'pc2', true), 9_900],
    ]));
    expect(v.units.map((u) => [u.unit, u.state, u.ageMs])).toEqual([['api', 'healthy', 200], ['Scout', 'stale', 2100]]);
    expect(v.down).toBe(true);
    const ok = aggregate(obs(12_000, [[hb('mainpc'), 11_900], [hb('pc2'), 11_950]], [], [[reading('api', 'mainpc', false, 'critical'), 11_800]]));
    expect(ok.down).toBe(true);
    const fine = aggregate(obs(12_000, [[hb('mainpc'), 11_900], [hb('pc2'), 11_950]], [], [[reading('api', 'mainpc', false, 'low'), 11_800]]));
    expect(fine.down).toBe(false);
  });

  it('a planned unit with no reading (its silent host\'s keys expired) is shown stale, with no age', () => {
    const o = obs(12_000, [[hb('mainpc'), 11_900]], [['pc2', 'unreachable']], [[reading('api', 'mainpc', true), 11_800]]);
    const v = aggregate({ ...o, expected: [{ unit: 'api', host: 'mainpc', criticality: 'critical' }, { unit: 'db', host: 'pc2', criticality: 'critical' }] });
    expect(v.units.map((u) => [u.unit, u.state, u.ageMs])).toEqual([['api', 'healthy', 200], ['db', 'stale', undefined]]);
    expect(v.units[1]!.detail).toBe('no reading');
  });

  it('a fenced unit is shown as fenced and does not make the view down', () => {
    const v = aggregate(obs(12_000, [[hb('mainpc'), 11_900], [hb('pc2'), 11_950]], [], [[{ ...reading('db', 'pc2', false, 'critical'), fenced: true }, 11_800]]));
    expect(v.units[0]!.state).toBe('fenced');
    expect(v.down).toBe(false);
  });

  it('transitions: a host going lost is an alert, coming back a recovery; a first healthy reading is neither', () => {
    const up = aggregate(obs(1000, [[hb('mainpc'), 900], [hb('pc2'), 900]], [], [[reading('a', 'pc2', true), 900]]));
    expect(transitions(undefined, up)).toEqual({ alerts: [], recoveries: [] });
    const lost = aggregate(obs(3000, [[hb('mainpc'), 2900], [hb('pc2'), 900]], [['pc2', 'unreachable']], [[reading('a', 'pc2', true), 900]]));
    const t1 = transitions(up, lost);
    expect(t1.alerts.map((a) => [a.kind, a.host, a.from, a.to])).toEqual([['host', 'pc2', 'up', 'lost']]);
    expect(t1.recoveries).toEqual([]);
    const back = aggregate(obs(4000, [[hb('mainpc'), 3900], [hb('pc2'), 3950]], [], [[reading('a', 'pc2', true), 3950]]));
    expect(transitions(lost, back).recoveries.map((r) => [r.host, r.from, r.to])).toEqual([['pc2', 'lost', 'up']]);
  });
});

const inv = (extra: Record<string, unknown> = {}) => parseInventory({
  version: 1,
  project: 'hl',
  hosts: { mainpc: { gpus: [{ model: 'RTX 4090', vram_gb: 24 }] }, pc2: { gpus: [{ model: 'RTX 3060', vram_gb: 12 }] }, spare: {} },
  services: { db: { image: 'postgres:15', placement: { host: 'pc2' }, failover: { to: ['mainpc'], stateful: true } } },
  agents: {
    Scout: { image: 's:1', ports: ['7100:8080'], healthcheck: { http: '/health' }, placement: { host: 'pc2' }, failover: { to: ['spare', 'mainpc'] } },
    Vision: { image: 'v:1', ports: ['7101:8080'], healthcheck: { http: '/health' }, gpu: { min_vram_gb: 8 }, placement: { host: 'pc2' }, failover: { to: ['spare', 'mainpc'] } },
    Lone: { image: 'l:1', ports: ['7102:8080'], healthcheck: { http: '/health' }, placement: { host: 'pc2' } },
  },
  ...extra,
});

describe('where a lost host\'s units go', () => {
  it('the first listed host that is up and meets the placement: a GPU unit skips the host without a GPU', () => {
    const p = planFailover(inv(), 'pc2', ['mainpc', 'spare']);
    expect(p.moves.map((m) => [m.unit, m.to, m.stateful, m.spec.host])).toEqual([['db', 'mainpc', true, 'mainpc'], ['Scout', 'spare', false, 'spare'], ['Vision', 'mainpc', false, 'mainpc']]);
    expect(p.moves.find((m) => m.unit === 'Vision')!.spec.gpuIndexes).toEqual([0]);
    expect(p.moves.find((m) => m.unit === 'Scout')!.home.host).toBe('pc2');
    expect(p.stays).toEqual([{ unit: 'Lone', reason: expect.stringContaining('no failover policy') }]);
  });

  it('a stateful unit\'s backup target follows it: restored on the new host, into its container there', () => {
    const backups = { directory: '/srv/b', postgres: [{ name: 'pg', host: 'pc2', via: 'docker-exec', unit: 'db', database: 'app', user: 'postgres' }] };
    const withBackup = inv({ services: { db: { image: 'postgres:15', placement: { host: 'pc2' }, failover: { to: ['mainpc'], stateful: true, backup: 'pg' } } }, backups });
    const db = planFailover(withBackup, 'pc2', ['mainpc']).moves.find((m) => m.unit === 'db')!;
    expect(db.restore).toEqual({ directory: '/srv/b', component: expect.objectContaining({ name: 'pg', kind: 'postgres', host: 'mainpc', via: 'docker-exec', container: 'hl_mainpc_db', database: 'app' }) });
    expect(planFailover(inv(), 'pc2', ['mainpc']).moves.find((m) => m.unit === 'db')!.restore).toBeUndefined();
    expect(() => planFailover(inv({ services: { db: { image: 'p:1', placement: { host: 'pc2' }, failover: { to: ['mainpc'], stateful: true, backup: 'pgx' } } }, backups }), 'pc2', ['mainpc']))
      .toThrow(/failover\.backup.*no backup target named "pgx".*pg/s);
  });

  it('the way back: a stateful unit\'s backup target where it runs now and at home; a stateless one carries nothing', () => {
    const backups = { directory: '/srv/b', postgres: [{ name: 'pg', host: 'pc2', via: 'docker-exec', unit: 'db', database: 'app', user: 'postgres' }] };
    const withBackup = inv({ services: { db: { image: 'postgres:15', placement: { host: 'pc2' }, failover: { to: ['mainpc'], stateful: true, backup: 'pg' } } }, backups });
    const moved = planFailover(withBackup, 'pc2', ['mainpc']).moves;
    const fence = (unit: string) => { const m = moved.find((x) => x.unit === unit)!; return { unit, to: m.to, spec: m.spec, home: m.home }; };
    const db = planFailback(withBackup, 'pc2', fence('db'));
    expect(db).toMatchObject({ unit: 'db', from: 'pc2', to: 'mainpc', stateful: true, backup: 'pg' });
    expect(db.restore).toEqual({ directory: '/srv/b', component: expect.objectContaining({ host: 'mainpc', container: 'hl_mainpc_db' }) });
    expect(db.back).toEqual({ directory: '/srv/b', component: expect.objectContaining({ host: 'pc2', container: 'hl_pc2_db', database: 'app' }) });
    const scout = planFailback(withBackup, 'pc2', fence('Scout'));
    expect([scout.stateful, scout.restore, scout.back]).toEqual([false, undefined, undefined]);
  });

  it('a host that is not up is skipped; when none is left the unit stays, with the reasons', () => {
    const p = planFailover(inv(), 'pc2', ['mainpc']);
    expect(p.moves.find((m) => m.unit === 'Scout')!.to).toBe('mainpc');
    const none = planFailover(inv(), 'pc2', []);
    expect(none.moves).toEqual([]);
    expect(none.stays.find((s) => s.unit === 'Scout')!.reason).toContain('spare is not up');
  });
});

describe('the health: section and failover policy', () => {
  const problems = (doc: ReturnType<typeof Object>) => {
    try {
      parseInventory(doc);
      return [];
    } catch (err) {
      if (err instanceof InventoryError) return err.problems.map((p) => `${p.path}: ${p.message}`);
      throw err;
    }
  };
  const base = { version: 1, project: 'hl', hosts: { mainpc: {} } };

  it('defaults: subjects "health", 250 ms heartbeats, lost after 1 s', () => {
    expect(parseInventory({ ...base, health: { nats: ['nats://127.0.0.1:4222'] } }).health).toEqual({ nats: ['nats://127.0.0.1:4222'], subjects: 'health', heartbeat: 250, lost_after: 1000, peer_port: 7499 });
  });

  it('refuses a bad URL, an unknown key, and a lost_after shorter than two heartbeats, naming the field', () => {
    expect(problems({ ...base, health: { nats: ['http://x:4222'] } }).join('\n')).toMatch(/health\.nats\[0\].*NATS URL/);
    expect(problems({ ...base, health: { nats: ['nats://x:4222'], natz: 1 } }).join('\n')).toMatch(/health.*natz/);
    expect(problems({ ...base, health: { nats: ['nats://x:4222'], heartbeat: '500ms', lost_after: '600ms' } }).join('\n')).toMatch(/health\.lost_after: must be at least twice/);
    expect(problems({ ...base, health: { nats: [] } }).join('\n')).toMatch(/health\.nats.*at least one/);
  });

  it('the plan refuses a failover host the inventory does not declare', () => {
    expect(() => planFailover(inv({ services: { db: { image: 'p:1', placement: { host: 'pc2' }, failover: { to: ['mainpx'] } } } }), 'pc2', ['mainpc'])).toThrow(/failover\.to\[0\].*unknown host "mainpx".*did you mean "mainpc"/s);
  });
});

describe('peer ports', () => {
  it('each host its own port where hosts share an address (one engine), the inventory\'s elsewhere', () => {
    expect(peerPorts({ peer_port: 7499 }, { mainpc: '127.0.0.11', pc2: '127.0.0.12' })).toEqual({ mainpc: 7499, pc2: 7499 });
    expect(peerPorts({ peer_port: 7499 }, { mainpc: '127.0.0.1', pc2: '127.0.0.1', gpu: '10.0.0.3', pc3: '127.0.0.1' })).toEqual({ mainpc: 7499, pc2: 7500, gpu: 7499, pc3: 7501 });
  });
});

describe('when a heartbeat counts as received', () => {
  const o = { heartbeatMs: 250, toleranceMs: 250 };
  /** Feeds heartbeats sent at `sent[i]` (worker clock) and received at `got[i]` (judge clock); returns when each counts. */
  function feed(sent: number[], got: number[], pid = 1): (number | undefined)[] {
    let timing: HeartbeatTiming | undefined;
    return sent.map((at, i) => {
      const r = timeHeartbeat(timing, { at, seq: i + 1, worker: { pid, identity: 'x' } }, got[i]!, o);
      if (r) timing = r.timing;
      return r?.countsAt;
    });
  }

  it('on time: when it arrives, whatever the offset between the clocks', () => {
    expect(feed([0, 250, 500], [5_010, 5_262, 5_505])).toEqual([5_010, 5_262, 5_505]);
  });

  it('flushed late after a reconnect: when it was due, so its host does not look up on old news', () => {
    // Sent every 250 ms; the link goes at 500; everything sent meanwhile arrives in one burst at 3,000.
    const counts = feed([0, 250, 500, 750, 1_000, 1_250, 2_900], [10, 260, 3_000, 3_001, 3_002, 3_003, 3_008]);
    expect(counts.slice(0, 2)).toEqual([10, 260]);
    expect(counts.slice(2, 6)).toEqual([510, 760, 1_010, 1_260]);
    expect(counts[6]).toBe(3_008); // sent just now: on time again
  });

  it('a worker clock that steps back is taken as the new offset after three heartbeats at their pace', () => {
    // From the fourth heartbeat on, the worker's clock reads 2 s less.
    const counts = feed([0, 250, 500, -1_250, -1_000, -750, -500], [10, 260, 510, 760, 1_010, 1_260, 1_510]);
    expect(counts[3]).toBeLessThan(0); // one alone could be a late one
    expect(counts.slice(5)).toEqual([1_260, 1_510]);
  });

  it('an older heartbeat than the last is ignored; a restarted worker starts afresh', () => {
    let timing: HeartbeatTiming | undefined;
    const beat = (seq: number, at: number, got: number, pid = 1) => {
      const r = timeHeartbeat(timing, { at, seq, worker: { pid, identity: 'x' } }, got, o);
      if (r) timing = r.timing;
      return r?.countsAt;
    };
    expect(beat(2, 250, 260)).toBe(260);
    expect(beat(1, 0, 270)).toBeUndefined();
    expect(beat(1, 90_000, 300, 2)).toBe(300);
  });
});
