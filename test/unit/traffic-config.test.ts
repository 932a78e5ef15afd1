/** The traffic proxy's configuration and runtime-API commands (src/plan/traffic.ts): pure builders, checked by equality. */
import { describe, expect, it } from 'vitest';
import { haproxyConfig, routeCommands, splitWeights, type UnitRoute } from '../../src/plan/traffic.js';

const route: UnitRoute = {
  unit: 'Agent 1',
  ports: [{ hostIp: '127.0.11.3', published: 41500, target: 8080 }],
  blue: { ports: { '8080/tcp': 32771 }, weight: 75 },
  green: { ports: { '8080/tcp': 32790 }, weight: 25 },
};

describe('traffic proxy configuration', () => {
  it('one frontend per published port, its backend split between the blue and green slots by weight; an empty slot takes nothing', () => {
    const cfg = haproxyConfig('pd', 'pc2', [route, { unit: 'api', ports: [{ hostIp: '::1', published: 41501, target: 80 }], blue: { ports: { '80/tcp': 32800 }, weight: 100 } }]);
    expect(cfg).toContain('stats socket abns@migrate-traffic-pd-pc2 level admin expose-fd listeners');
    expect(cfg).toContain('frontend fe_Agent_1_41500\n  bind 127.0.11.3:41500\n  default_backend be_Agent_1_41500\n');
    expect(cfg).toContain('backend be_Agent_1_41500\n  balance roundrobin\n  server blue 127.0.0.1:32771 weight 75\n  server green 127.0.0.1:32790 weight 25\n');
    expect(cfg).toContain('bind [::1]:41501');
    expect(cfg).toContain('backend be_api_41501\n  balance roundrobin\n  server blue 127.0.0.1:32800 weight 100\n  server green 127.0.0.1:1 weight 0 disabled\n');
    expect(cfg.indexOf('fe_Agent_1')).toBeLessThan(cfg.indexOf('fe_api')); // stable order: same routes, same file
  });

  it('runtime-API commands set each slot\'s address, state and weight; an empty slot goes to maintenance', () => {
    expect(routeCommands({ ...route, green: undefined })).toEqual([
      'set server be_Agent_1_41500/blue addr 127.0.0.1 port 32771', 'set server be_Agent_1_41500/blue state ready', 'set weight be_Agent_1_41500/blue 75',
      'set weight be_Agent_1_41500/green 0', 'set server be_Agent_1_41500/green state maint',
    ]);
  });

  it('steps split the weights; 0 and 100 move everything at once', () => {
    expect(splitWeights('green', 25)).toEqual({ blue: 75, green: 25 });
    expect(splitWeights('green', 100)).toEqual({ blue: 0, green: 100 });
    expect(splitWeights('blue', 100)).toEqual({ blue: 100, green: 0 });
    expect(splitWeights('green', 140)).toEqual({ blue: 0, green: 100 });
  });
});
