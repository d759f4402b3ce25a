import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointConfigSpec, MachineLearningEndpointStatus } from '../api/generated.ts';
import { planFromTemplates, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import { decide, type LiveRoute, type RolloutInput } from './decide.ts';
import { renderStatus } from './status.ts';

const now = new Date('2026-11-30T12:00:00Z');
const at = (secondsFromNow: number) => new Date(now.getTime() + secondsFromNow * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function plan(image: string, instances = 1, extra: Partial<MachineLearningEndpointConfigSpec['models'][0]> = {}): VersionPlan {
  const r = planFromTemplates('e', 'c', { models: [{ model: 'm', instances, ...extra }] }, new Map([['m', { image }]]));
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}
const v1 = plan('acme/m:1');
const v2 = plan('acme/m:2');
const routeTo = (p: VersionPlan, observed?: boolean): LiveRoute => ({ versions: new Map([[p.version, 100]]), services: p.variants.map((v) => v.instance), observed });

/** Workloads: every instance in `available` runs as wanted and is ready; others have nothing ready. */
function input(o: Partial<RolloutInput> & { available?: string[]; readyCount?: (v: VariantPlan) => number }): RolloutInput {
  const available = new Set(o.available ?? []);
  return {
    generation: 1,
    spec: { config: 'c', rollout: { drainSeconds: 30, progressDeadlineSeconds: 60 } },
    status: {},
    snapshot: (version) => [v1, v2].find((p) => p.version === version),
    workload: (v, replicas) => ({ ready: o.readyCount?.(v) ?? (available.has(v.instance) ? replicas : 0), available: available.has(v.instance) }),
    now,
    ...o,
  };
}
const serving = (p: VersionPlan, extra: MachineLearningEndpointStatus = {}): MachineLearningEndpointStatus => ({
  endpointConfigVersion: p.version,
  traffic: p.variants.map((v) => ({ variant: v.variant.model, version: p.version, modelVersion: v.version, service: v.instance, weight: 100 })),
  ...extra,
});
const instancesOf = (p: VersionPlan) => p.variants.map((v) => v.instance);

describe('the first version', () => {
  it('routes nothing until every variant is Available, then switches in one step', () => {
    const waiting = decide(input({ target: v1 }));
    expect(waiting.route).toBeUndefined();
    expect(waiting.outcome.pending).toBe(v1);
    expect(waiting.deploy.map((d) => d.plan)).toEqual([v1]);
    const ready = decide(input({ target: v1, available: instancesOf(v1) }));
    expect(ready.route!.map((b) => [b.service, b.weight])).toEqual([[v1.variants[0].instance, 100]]);
    expect(ready.outcome.switched).toEqual({ from: undefined, to: v1.version });
  });
});

describe('a switch (finding 1: no drain)', () => {
  it('keeps the previous version running, recorded in status, until its drain period ends', () => {
    const d = decide(input({ target: v2, status: serving(v1), route: routeTo(v1), available: [...instancesOf(v1), ...instancesOf(v2)] }));
    expect(d.route!.map((b) => b.service)).toEqual(instancesOf(v2));
    expect(d.outcome.draining).toEqual([{ version: v1.version, services: instancesOf(v1), until: at(30) }]);
    for (const i of instancesOf(v1)) expect(d.keepInstances).toContain(i);
    expect(d.deploy.map((x) => x.plan.version)).toEqual([v1.version, v2.version]);
    expect(d.requeueAfterMs).toBe(30_500);
  });

  it('ends the drain once its time is up and the gateway has processed the new route', () => {
    const status = serving(v2, { draining: [{ version: v1.version, services: instancesOf(v1), until: at(-1) }] });
    const unseen = decide(input({ target: v2, status, route: routeTo(v2, false), available: instancesOf(v2) }));
    expect(unseen.outcome.draining).toHaveLength(1);
    expect(unseen.keepInstances).toContain(v1.variants[0].instance);
    const seen = decide(input({ target: v2, status, route: routeTo(v2, true), available: instancesOf(v2) }));
    expect(seen.outcome.draining).toEqual([]);
    expect(seen.keepInstances).not.toContain(v1.variants[0].instance);
    // Its snapshots stay, for rollback.
    expect(seen.keepVersions).toContain(v1.version);
    expect(seen.outcome.history).toEqual([v1.version]);
  });

  it('keeps draining until the time is up, even when the gateway has seen the route', () => {
    const status = serving(v2, { draining: [{ version: v1.version, services: instancesOf(v1), until: at(10) }] });
    const d = decide(input({ target: v2, status, route: routeTo(v2, true), available: instancesOf(v2) }));
    expect(d.outcome.draining).toHaveLength(1);
    expect(d.requeueAfterMs).toBe(10_500);
  });
});

describe('the serving version (finding 2: it can be lost)', () => {
  it('is read from the live route, not from a status that is behind it', () => {
    // A crash after the route switched to v2 and before the status said so.
    const d = decide(input({ target: v2, status: serving(v1), route: routeTo(v2), available: instancesOf(v2) }));
    expect(d.outcome.serving).toBe(v2);
    expect(d.outcome.switched).toBeUndefined();
    // The version the status still names left the route: it drains from now, it is not deleted at once.
    expect(d.outcome.draining).toEqual([{ version: v1.version, services: instancesOf(v1), until: at(30) }]);
    expect(d.keepInstances).toContain(v1.variants[0].instance);
  });

  it('never lets go of what the live route references, even a version it cannot rebuild', () => {
    const route: LiveRoute = { versions: new Map([['0123456789', 100]]), services: ['m-lost'] };
    const d = decide(input({ target: v2, status: { endpointConfigVersion: '0123456789' }, route }));
    expect(d.outcome.unreadable).toBe('0123456789');
    expect(d.route).toBeUndefined();
    expect(d.keepInstances).toContain('m-lost');
    expect(d.keepVersions).toContain('0123456789');
  });
});

describe('a pending version (finding 4: it changes the serving one)', () => {
  it('runs a shared instance with the larger replica count until the switch', () => {
    const four = plan('acme/m:1', 4);
    const oneAndNewModel = planFromTemplates(
      'e',
      'c',
      { models: [{ model: 'm', instances: 1 }, { model: 'n', instances: 1 }] },
      new Map([
        ['m', { image: 'acme/m:1' }],
        ['n', { image: 'acme/n:1' }],
      ]),
    );
    if (!oneAndNewModel.ok) throw new Error('unresolved');
    const next = oneAndNewModel.plan;
    const shared = four.variants[0].instance;
    expect(next.variants[0].instance).toBe(shared);
    const d = decide(input({ target: next, status: serving(four), route: routeTo(four), snapshot: (v) => (v === four.version ? four : undefined), available: [shared] }));
    expect(d.outcome.pending).toBe(next);
    const replicas = new Map<string, number>();
    for (const x of d.deploy) for (const [i, n] of x.replicas) replicas.set(i, n);
    expect(replicas.get(shared)).toBe(4);
  });
});

describe('the progress deadline (finding 6: it strands resources)', () => {
  const status = (extra: MachineLearningEndpointStatus = {}) => serving(v1, { pendingEndpointConfigVersion: v2.version, pendingSince: at(-61), ...extra });
  it('scales a version that missed it to zero, keeps its snapshots and the traffic where it was', () => {
    const d = decide(input({ target: v2, status: status(), route: routeTo(v1), available: instancesOf(v1) }));
    expect(d.outcome.expired).toBe(true);
    expect(d.route!.map((b) => b.service)).toEqual(instancesOf(v1));
    expect(d.deploy.find((x) => x.plan === v2)!.replicas.get(v2.variants[0].instance)).toBe(0);
    expect(d.keepVersions).toContain(v2.version);
  });

  it('does not retry by itself, but does on a new generation', () => {
    const failed = status({ conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: '', lastTransitionTime: at(-1), observedGeneration: 1 }] });
    // The Deployment became Available since: still no switch for this attempt.
    expect(decide(input({ target: v2, status: failed, route: routeTo(v1), available: [...instancesOf(v1), ...instancesOf(v2)] })).outcome.expired).toBe(true);
    const retried = decide(input({ generation: 2, target: v2, status: failed, route: routeTo(v1), available: instancesOf(v1) }));
    expect(retried.outcome.expired).toBe(false);
    expect(retried.outcome.pendingSince).toBe(at(0));
    expect(retried.deploy.find((x) => x.plan === v2)!.replicas.get(v2.variants[0].instance)).toBe(1);
  });

  it('abandons a pending version whose templates were deleted: nothing of it is kept', () => {
    const problem = { type: 'TemplatesAvailable', status: 'False' as const, reason: 'ConfigNotFound', message: 'gone' };
    const d = decide(input({ problem, status: serving(v1, { pendingEndpointConfigVersion: v2.version, pendingSince: at(-5) }), route: routeTo(v1), available: instancesOf(v1) }));
    expect(d.outcome.pending).toBeUndefined();
    expect(d.keepInstances).not.toContain(v2.variants[0].instance);
    expect(d.keepVersions).not.toContain(v2.version);
    expect(d.outcome.serving).toBe(v1);
  });
});

describe('Ready (finding 5: true while nothing is ready)', () => {
  const render = (readyCount: number) => {
    const three = plan('acme/m:1', 3);
    const decision = decide(input({ target: three, status: serving(three), route: routeTo(three), snapshot: () => three, available: instancesOf(three) }));
    return renderStatus({ decision, previous: undefined, generation: 1, host: 'h', url: 'http://h', readyOf: () => readyCount, routeConditions: [], now });
  };
  it('is True only when the serving version has every wanted replica ready', () => {
    expect(render(3).conditions!.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', reason: 'Serving' });
  });
  it('is Degraded, with counts, when some are missing', () => {
    const s = render(2);
    expect(s.conditions!.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'Degraded', message: expect.stringContaining('m 2/3 ready') });
    expect(s.state).toBe('InService');
    expect(s.ready).toBe('2/3');
  });
  it('is Unavailable when a variant that takes traffic has none ready', () => {
    expect(render(0).conditions!.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'Unavailable' });
  });
});
