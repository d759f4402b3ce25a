import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointStatus } from '../api/generated.ts';
import { planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import type { LiveRoute, RolloutInput } from './decision.ts';
import { observe, settle, splitOf, withDrain, type Verdict } from './phases.ts';

const now = new Date('2026-11-30T12:00:00Z');
const at = (s: number) => new Date(now.getTime() + s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
function plan(image: string): VersionPlan {
  const r = planFromTemplates('e', 'c', { models: [{ model: 'm' }] }, new Map([['m', { image }]]));
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}
const v1 = plan('acme/m:1');
const v2 = plan('acme/m:2');
const v3 = plan('acme/m:3');
const svc = (p: VersionPlan) => p.variants[0].instance;
const route = (weights: [VersionPlan, number][], observed?: boolean): LiveRoute => ({
  versions: new Map(weights.map(([p, w]) => [p.version, w])),
  services: weights.map(([p]) => svc(p)),
  observed,
});
const traffic = (p: VersionPlan): MachineLearningEndpointStatus['traffic'] => [
  { variant: 'm', version: p.version, modelVersion: p.variants[0].version, service: svc(p), weight: 100 },
];
const input = (o: Partial<RolloutInput>): RolloutInput => ({
  generation: 1,
  spec: { config: 'c' },
  status: {},
  snapshot: (version) => [v1, v2, v3].find((p) => p.version === version),
  workload: () => ({ ready: 1, available: true }),
  now,
  ...o,
});

describe('splitOf: what serves, from the live route', () => {
  const cases: [string, LiveRoute | undefined, string | undefined, ReturnType<typeof splitOf>][] = [
    ['no route: the version status names', undefined, v1.version, { stable: v1.version }],
    ['one version: it serves, whatever status says', route([[v2, 100]]), v1.version, { stable: v2.version }],
    [
      'two versions: the one status names serves, the other is the canary',
      route([
        [v1, 10],
        [v2, 90],
      ]),
      v1.version,
      { stable: v1.version, canary: { version: v2.version, weight: 90 } },
    ],
    [
      'two versions, status names neither: the larger serves',
      route([
        [v1, 30],
        [v2, 70],
      ]),
      undefined,
      { stable: v2.version, canary: { version: v1.version, weight: 30 } },
    ],
    [
      'a version at 0 is not in the route',
      route([
        [v1, 100],
        [v2, 0],
      ]),
      v1.version,
      { stable: v1.version },
    ],
  ];
  it.each(cases)('%s', (_, r, recorded, want) => expect(splitOf(r, recorded)).toEqual(want));
});

describe('withDrain', () => {
  it("replaces a version's drain, and drops it when no Service is left to drain", () => {
    const before = [{ version: v1.version, services: ['a'], until: at(5) }];
    expect(withDrain(before, v1.version, ['a', 'b'], at(30))).toEqual([
      { version: v1.version, services: ['a', 'b'], until: at(30) },
    ]);
    expect(withDrain(before, v1.version, [], at(30))).toEqual([]);
  });
});

describe('observe', () => {
  it('a switch the last round could not record: the version status names drains from now, and joins the history', () => {
    const o = observe(
      input({
        target: v2,
        status: { endpointConfigVersion: v1.version, traffic: traffic(v1) },
        route: route([[v2, 100]]),
      }),
      at(30),
    );
    expect(o.serving).toBe(v2);
    expect(o.draining).toEqual([{ version: v1.version, services: [svc(v1)], until: at(30) }]);
    expect(o.history).toEqual([v1.version]);
  });

  it('a canary that is not the target leaves the route and drains', () => {
    const o = observe(
      input({
        target: v3,
        status: { endpointConfigVersion: v1.version },
        route: route([
          [v1, 80],
          [v2, 20],
        ]),
      }),
      at(30),
    );
    expect(o.canary).toBeUndefined();
    expect(o.draining).toEqual([{ version: v2.version, services: [svc(v2)], until: at(30) }]);
  });

  it('a serving version whose snapshot cannot be read is unreadable, not gone', () => {
    const o = observe(input({ status: { endpointConfigVersion: 'ffff' }, snapshot: () => undefined }), at(30));
    expect(o).toMatchObject({ servingVersion: 'ffff', serving: undefined, unreadable: 'ffff' });
  });
});

describe('settle', () => {
  const verdict = (o: Partial<Verdict>): Verdict => ({
    switched: undefined,
    targetWeight: 0,
    draining: [],
    history: [],
    ...o,
  });

  it('a drain whose time is up ends once the gateway has processed the route, and the version joins the history', () => {
    const draining = [{ version: v1.version, services: [svc(v1)], until: at(-1) }];
    const done = settle(input({ route: route([[v2, 100]], true) }), verdict({ serving: v2, draining }), 3);
    expect(done.draining).toEqual([]);
    expect(done.history).toEqual([v1.version]);
    expect(done.decision.keepInstances).toEqual(new Set([svc(v2)]));
    const unprocessed = settle(input({ route: route([[v2, 100]], false) }), verdict({ serving: v2, draining }), 3);
    expect(unprocessed.draining).toEqual(draining);
    expect(unprocessed.drainsDueMs).toEqual([500]);
  });

  it('deploys draining, then serving, then pending versions, and splits the route by the target weight', () => {
    const pending = { plan: v2, replicas: new Map([[svc(v2), 1]]) };
    const draining = [{ version: v3.version, services: [svc(v3)], until: at(10) }];
    const s = settle(input({}), verdict({ serving: v1, pending, targetWeight: 20, draining }), 3);
    expect(s.decision.deploy.map((d) => d.plan.version)).toEqual([v3.version, v1.version, v2.version]);
    expect(s.decision.route!.map((b) => [b.version, b.weight])).toEqual([
      [v1.version, 80],
      [v2.version, 20],
    ]);
    expect(s.decision.keepVersions).toEqual(new Set([v1.version, v2.version, v3.version]));
    expect(s.drainsDueMs).toEqual([10_500]);
  });

  it('keeps what an unreadable serving version takes, and routes nothing while the route is blocked', () => {
    const s = settle(
      input({
        status: { traffic: traffic(v1) },
        routeBlocked: { type: 'Ready', status: 'False', reason: 'HostConflict', message: '' },
      }),
      verdict({ unreadable: v1.version, history: ['aaaa', 'bbbb', 'cccc', 'dddd'] }),
      2,
    );
    expect(s.decision.route).toBeUndefined();
    expect(s.decision.keepInstances).toEqual(new Set([svc(v1)]));
    expect(s.history).toEqual(['aaaa', 'bbbb']);
  });
});
