import { describe, expect, it } from 'vitest';
import type {
  MachineLearningEndpointConfigSpec,
  MachineLearningEndpointRollout,
  MachineLearningEndpointStatus,
} from '../api/generated.ts';
import { planFromTemplates, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import { decide, type LiveRoute, type RolloutInput } from './decide.ts';
import { renderStatus } from './status.ts';
import { planFingerprint } from './strategies.ts';

const now = new Date('2026-11-30T12:00:00Z');
const at = (secondsFromNow: number) =>
  new Date(now.getTime() + secondsFromNow * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function plan(
  image: string,
  instances = 1,
  extra: Partial<MachineLearningEndpointConfigSpec['models'][0]> = {},
): VersionPlan {
  const r = planFromTemplates('e', 'c', { models: [{ model: 'm', instances, ...extra }] }, new Map([['m', { image }]]));
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}
const v1 = plan('acme/m:1');
const v2 = plan('acme/m:2');
const routeTo = (p: VersionPlan, observed?: boolean): LiveRoute => ({
  versions: new Map([[p.version, 100]]),
  services: p.variants.map((v) => v.instance),
  observed,
});

/** Workloads: every instance in `available` runs as wanted and is ready; others have nothing ready. */
function input(
  o: Partial<RolloutInput> & { available?: string[]; readyCount?: (v: VariantPlan) => number },
): RolloutInput {
  const available = new Set(o.available ?? []);
  return {
    generation: 1,
    spec: { config: 'c', rollout: { drainSeconds: 30, progressDeadlineSeconds: 60 } },
    status: {},
    snapshot: (version) => [v1, v2].find((p) => p.version === version),
    workload: (v, replicas) => ({
      ready: o.readyCount?.(v) ?? (available.has(v.instance) ? replicas : 0),
      available: available.has(v.instance),
    }),
    now,
    ...o,
  };
}
const serving = (p: VersionPlan, extra: MachineLearningEndpointStatus = {}): MachineLearningEndpointStatus => ({
  endpointConfigVersion: p.version,
  traffic: p.variants.map((v) => ({
    variant: v.variant.model,
    version: p.version,
    modelVersion: v.version,
    service: v.instance,
    weight: 100,
  })),
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

  it('past its deadline, says how many replicas it wanted, not the 0 it is scaled to', () => {
    const four = plan('acme/m:1', 4);
    const d = decide(
      input({
        target: four,
        snapshot: () => four,
        status: { pendingEndpointConfigVersion: four.version, pendingSince: at(-61) },
        readyCount: () => 1,
      }),
    );
    expect(d.outcome.expired).toBe(true);
    expect(d.deploy.find((x) => x.plan === four)!.replicas.get(four.variants[0].instance)).toBe(0);
    const ready = renderStatus({
      decision: d,
      previous: {},
      generation: 1,
      host: 'h',
      url: 'http://h',
      readyOf: () => 1,
      routeConditions: [],
      now,
    }).conditions!.find((c) => c.type === 'Ready')!;
    expect(ready.reason).toBe('ProgressDeadlineExceeded');
    expect(ready.message).toBe(
      `the first version did not become Available within 60s: ${four.variants[0].instance} 1/4 ready`,
    );
  });
});

describe('a switch (finding 1: no drain)', () => {
  it('keeps the previous version running, recorded in status, until its drain period ends', () => {
    const d = decide(
      input({
        target: v2,
        status: serving(v1),
        route: routeTo(v1),
        available: [...instancesOf(v1), ...instancesOf(v2)],
      }),
    );
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
  it("is no longer unreadable once a new version replaces it: the status does not call the new one's snapshots missing", () => {
    // v1's snapshots were deleted by hand while v2 rolled out; v2 becomes Available and takes over.
    const d = decide(
      input({
        target: v2,
        status: serving(v1),
        route: routeTo(v1),
        snapshot: (version) => (version === v2.version ? v2 : undefined),
        available: instancesOf(v2),
      }),
    );
    expect(d.outcome.switched).toEqual({ from: v1.version, to: v2.version });
    expect(d.outcome.serving).toBe(v2);
    expect(d.outcome.unreadable).toBeUndefined();
    // What took v1's traffic drains, as the status last said.
    expect(d.outcome.draining).toEqual([{ version: v1.version, services: instancesOf(v1), until: at(30) }]);
  });

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

  it('keeps what the status says serves while it can read neither the route nor the version (a just-written route, a template deleted)', () => {
    // The round that switched wrote the route and the status; the next one runs before the cache
    // shows that route or the version's snapshot, and the config template has just been deleted.
    const d = decide(input({ target: undefined, status: serving(v1), snapshot: () => undefined }));
    expect(d.outcome.unreadable).toBe(v1.version);
    expect(d.route).toBeUndefined();
    for (const i of instancesOf(v1)) expect(d.keepInstances).toContain(i);
    expect(d.keepVersions).toContain(v1.version);
  });
});

describe('a pending version (finding 4: it changes the serving one)', () => {
  it('runs a shared instance with the larger replica count until the switch', () => {
    const four = plan('acme/m:1', 4);
    const oneAndNewModel = planFromTemplates(
      'e',
      'c',
      {
        models: [
          { model: 'm', instances: 1 },
          { model: 'n', instances: 1 },
        ],
      },
      new Map([
        ['m', { image: 'acme/m:1' }],
        ['n', { image: 'acme/n:1' }],
      ]),
    );
    if (!oneAndNewModel.ok) throw new Error('unresolved');
    const next = oneAndNewModel.plan;
    const shared = four.variants[0].instance;
    expect(next.variants[0].instance).toBe(shared);
    const d = decide(
      input({
        target: next,
        status: serving(four),
        route: routeTo(four),
        snapshot: (v) => (v === four.version ? four : undefined),
        available: [shared],
      }),
    );
    expect(d.outcome.pending).toBe(next);
    const replicas = new Map<string, number>();
    for (const x of d.deploy) for (const [i, n] of x.replicas) replicas.set(i, n);
    expect(replicas.get(shared)).toBe(4);
  });
});

describe('the progress deadline (finding 6: it strands resources)', () => {
  const status = (extra: MachineLearningEndpointStatus = {}) =>
    serving(v1, { pendingEndpointConfigVersion: v2.version, pendingSince: at(-61), ...extra });
  it('scales a version that missed it to zero, keeps its snapshots and the traffic where it was', () => {
    const d = decide(input({ target: v2, status: status(), route: routeTo(v1), available: instancesOf(v1) }));
    expect(d.outcome.expired).toBe(true);
    expect(d.route!.map((b) => b.service)).toEqual(instancesOf(v1));
    expect(d.deploy.find((x) => x.plan === v2)!.replicas.get(v2.variants[0].instance)).toBe(0);
    expect(d.keepVersions).toContain(v2.version);
  });

  it('does not retry by itself, but does on a new generation', () => {
    const failed = status({
      conditions: [
        {
          type: 'Progressing',
          status: 'False',
          reason: 'ProgressDeadlineExceeded',
          message: '',
          lastTransitionTime: at(-1),
          observedGeneration: 1,
        },
      ],
    });
    // The Deployment became Available since: still no switch for this attempt.
    expect(
      decide(
        input({ target: v2, status: failed, route: routeTo(v1), available: [...instancesOf(v1), ...instancesOf(v2)] }),
      ).outcome.expired,
    ).toBe(true);
    const retried = decide(
      input({ generation: 2, target: v2, status: failed, route: routeTo(v1), available: instancesOf(v1) }),
    );
    expect(retried.outcome.expired).toBe(false);
    expect(retried.outcome.pendingSince).toBe(at(0));
    expect(retried.deploy.find((x) => x.plan === v2)!.replicas.get(v2.variants[0].instance)).toBe(1);
  });

  it('is pending no more once it failed, and stays failed when the next round reads that status back', () => {
    const d = decide(input({ target: v2, status: status(), route: routeTo(v1), available: instancesOf(v1) }));
    const written = renderStatus({
      decision: d,
      previous: status(),
      generation: 1,
      host: 'h',
      url: 'http://h',
      readyOf: () => 1,
      routeConditions: [],
      now,
    });
    expect(written.pendingEndpointConfigVersion).toBeUndefined();
    expect(written).toMatchObject({
      state: 'InService',
      endpointConfigVersion: v1.version,
      rollout: { version: v2.version, phase: 'Failed' },
    });
    // Available since: still no switch for this attempt, and still not pending.
    const next = decide(
      input({ target: v2, status: written, route: routeTo(v1), available: [...instancesOf(v1), ...instancesOf(v2)] }),
    );
    expect(next.outcome.expired).toBe(true);
    expect(
      renderStatus({
        decision: next,
        previous: written,
        generation: 1,
        host: 'h',
        url: 'http://h',
        readyOf: () => 1,
        routeConditions: [],
        now,
      }).pendingEndpointConfigVersion,
    ).toBeUndefined();
  });

  it('abandons a pending version whose templates were deleted: nothing of it is kept', () => {
    const problem = { type: 'TemplatesAvailable', status: 'False' as const, reason: 'ConfigNotFound', message: 'gone' };
    const d = decide(
      input({
        problem,
        status: serving(v1, { pendingEndpointConfigVersion: v2.version, pendingSince: at(-5) }),
        route: routeTo(v1),
        available: instancesOf(v1),
      }),
    );
    expect(d.outcome.pending).toBeUndefined();
    expect(d.keepInstances).not.toContain(v2.variants[0].instance);
    expect(d.keepVersions).not.toContain(v2.version);
    expect(d.outcome.serving).toBe(v1);
  });
});

describe('Ready (finding 5: true while nothing is ready)', () => {
  const render = (readyCount: number) => {
    const three = plan('acme/m:1', 3);
    const decision = decide(
      input({
        target: three,
        status: serving(three),
        route: routeTo(three),
        snapshot: () => three,
        available: instancesOf(three),
      }),
    );
    return renderStatus({
      decision,
      previous: undefined,
      generation: 1,
      host: 'h',
      url: 'http://h',
      readyOf: () => readyCount,
      routeConditions: [],
      now,
    });
  };
  it('READY (kubectl get mle) counts the first version coming up, not 0/0, before anything serves', () => {
    const three = plan('acme/m:1', 3);
    const decision = decide(input({ target: three, readyCount: () => 1 }));
    const status = renderStatus({
      decision,
      previous: undefined,
      generation: 1,
      host: 'h',
      url: 'http://h',
      readyOf: () => 1,
      routeConditions: [],
      now,
    });
    expect(status).toMatchObject({ state: 'Creating', ready: '1/3' });
  });
  it('is True only when the serving version has every wanted replica ready', () => {
    expect(render(3).conditions!.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', reason: 'Serving' });
  });
  it('is Degraded, with counts, when some are missing', () => {
    const s = render(2);
    expect(s.conditions!.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Degraded',
      message: expect.stringContaining('m 2/3 ready'),
    });
    expect(s.state).toBe('InService');
    expect(s.ready).toBe('2/3');
  });
  it('is Unavailable when a variant that takes traffic has none ready', () => {
    expect(render(0).conditions!.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Unavailable',
    });
  });
});

describe('shadow variants', () => {
  const models2 = new Map([
    ['m', { image: 'acme/m:1' }],
    ['shadow', { image: 'acme/shadow:1' }],
  ]);
  const withShadow = (image: string) => {
    const r = planFromTemplates(
      'e',
      'c',
      { models: [{ model: 'm' }, { model: 'shadow', shadow: { percent: 25 } }] },
      new Map([...models2, ['m', { image }]]),
    );
    if (!r.ok) throw new Error('unresolved');
    return r.plan;
  };
  it('never hold up a switch: a shadow that is not ready leaves the primary to switch, and gets no mirror', () => {
    const a = withShadow('acme/m:1');
    const b = withShadow('acme/m:2');
    const primaryOnly = [b.variants[0].instance, a.variants[0].instance];
    const d = decide(input({ target: b, status: serving(a), route: routeTo(a), available: primaryOnly }));
    expect(d.outcome.switched).toEqual({ from: a.version, to: b.version });
    expect(d.route!.map((x) => x.service)).toEqual([b.variants[0].instance]);
    expect(d.mirrors).toEqual([]);
    expect(d.targets!.map((t) => t.variant)).toEqual(['m']);
    const ready = decide(
      input({ target: b, status: serving(b), route: routeTo(b), available: b.variants.map((v) => v.instance) }),
    );
    expect(ready.mirrors).toEqual([
      { version: b.version, variant: 'shadow', service: b.variants[1].instance, port: 80, percent: 25 },
    ]);
  });

  it('mirror: Agent (or a compare block) goes to the serving agents, not the route, and gives the serving variants an agent', () => {
    const plan = (shadow: Record<string, unknown>) => {
      const r = planFromTemplates(
        'e',
        'c',
        { models: [{ model: 'm' }, { model: 'shadow', shadow: { percent: 25, ...shadow } }] },
        models2,
      );
      if (!r.ok) throw new Error('unresolved');
      return r.plan;
    };
    const gateway = plan({});
    for (const agent of [plan({ mirror: 'Agent' }), plan({ compare: { path: '$.predictions' } })]) {
      const d = decide(
        input({
          target: agent,
          status: serving(agent),
          route: routeTo(agent),
          available: agent.variants.map((v) => v.instance),
        }),
      );
      expect(d.mirrors).toEqual([]);
      expect(d.agentMirrors).toEqual([
        { version: agent.version, variant: 'shadow', service: agent.variants[1].instance, port: 80, percent: 25 },
      ]);
      expect(agent.variants[0].agent).toEqual({});
      // An agent is part of the model version: the serving variant is a new instance of it.
      expect(agent.variants[0].instance).not.toBe(gateway.variants[0].instance);
    }
    expect(gateway.variants[0].agent).toBeUndefined();
    expect(plan({ mirror: 'Gateway' }).variants[0].instance).toBe(gateway.variants[0].instance);
  });

  it("reports an agent-mirrored shadow as mirrored where the data plane cannot mirror, with the agents' comparison", () => {
    const r = planFromTemplates(
      'e',
      'c',
      {
        models: [
          { model: 'm' },
          { model: 'shadow', shadow: { percent: 25, compare: { path: '$.predictions' } } },
          { model: 'other', shadow: { percent: 5 } },
        ],
      },
      new Map([...models2, ['other', { image: 'acme/other:1' }]]),
    );
    if (!r.ok) throw new Error('unresolved');
    const p = r.plan;
    const d = decide(
      input({ target: p, status: serving(p), route: routeTo(p), available: p.variants.map((v) => v.instance) }),
    );
    const comparison = {
      requests: 150,
      compared: 150,
      predictions: 150,
      agreement: 0.973333,
      serving: { errorRate: 0 },
      shadow: { errorRate: 0 },
      pods: 2,
      dropped: 0,
      window: { seconds: 300, requests: 150, compared: 150 },
    };
    const render = (mirroringUnavailable?: string) =>
      renderStatus({
        decision: d,
        previous: serving(p),
        generation: 1,
        host: 'h',
        url: 'http://h',
        readyOf: () => 1,
        routeConditions: [],
        mirroringUnavailable,
        // One for the gateway's shadow too: a gateway's mirror has nothing compared, whatever is reported.
        comparisons: new Map([
          [p.variants[1].instance, comparison],
          [p.variants[2].instance, comparison],
        ]),
        now,
      });
    const written = render();
    expect(written.shadows).toMatchObject([
      { variant: 'shadow', mirror: 'Agent', mirrored: true, comparison },
      { variant: 'other', mirror: 'Gateway', mirrored: true },
    ]);
    expect(written.shadows![1]).not.toHaveProperty('comparison');
    expect(written.conditions!.find((c) => c.type === 'ShadowsMirrored')).toMatchObject({
      status: 'True',
      message: `25% of the requests mirrored to shadow (${p.variants[1].instance}) by the serving pods' agents, answers compared, 5% of the requests mirrored to other (${p.variants[2].instance}) by the gateway`,
    });
    const noMirror = render('this data plane cannot mirror');
    expect(noMirror.shadows!.map((x) => x.mirrored)).toEqual([true, false]);
    expect(noMirror.conditions!.find((c) => c.type === 'ShadowsMirrored')).toMatchObject({
      status: 'False',
      reason: 'MirroringUnavailable',
    });
  });
});

describe('progressive delivery', () => {
  const canary = {
    config: 'c',
    rollout: {
      strategy: 'Canary' as const,
      canary: { percent: 10, bakeSeconds: 60 },
      drainSeconds: 30,
      progressDeadlineSeconds: 60,
    },
  };
  const split = (s: VersionPlan, t: VersionPlan, w: number): LiveRoute => ({
    versions: new Map([
      [s.version, 100 - w],
      [t.version, w],
    ]),
    services: [...instancesOf(s), ...instancesOf(t)],
  });
  const both = [...instancesOf(v1), ...instancesOf(v2)];
  const weights = (d: ReturnType<typeof decide>) => Object.fromEntries(d.route!.map((b) => [b.version, b.weight]));
  const atStep = (
    step: number,
    weight: number,
    startedAt: string,
    extra = {},
    rollout: MachineLearningEndpointRollout = canary.rollout,
  ) => ({
    version: v2.version,
    plan: planFingerprint(rollout),
    strategy: 'Canary',
    steps: 2,
    phase: 'Progressing' as const,
    step,
    weight,
    stepStartedAt: startedAt,
    ...extra,
  });

  it('Canary: the first step sends canary.percent to the new version in one write, the rest stays', () => {
    const d = decide(input({ spec: canary, target: v2, status: serving(v1), route: routeTo(v1), available: both }));
    expect(weights(d)).toEqual({ [v1.version]: 90, [v2.version]: 10 });
    expect(d.outcome.rollout).toMatchObject({
      phase: 'Progressing',
      step: 1,
      steps: 2,
      weight: 10,
      stepStartedAt: at(0),
      nextStepAt: at(60),
    });
    expect(d.outcome.switched).toBeUndefined();
    expect(d.outcome.events.map((e) => e.reason)).toEqual(['RolloutStep']);
    expect(d.requeueAfterMs).toBe(60_200);
  });

  it('a variant both versions share (same model version) is one entry of the traffic table, with both shares summed', () => {
    const two = (n: string) => {
      const r = planFromTemplates(
        'e',
        'c',
        {
          models: [
            { model: 'm', weight: 1 },
            { model: 'n', weight: 1 },
          ],
        },
        new Map([
          ['m', { image: 'acme/m:1' }],
          ['n', { image: n }],
        ]),
      );
      if (!r.ok) throw new Error('unresolved');
      return r.plan;
    };
    const a = two('acme/n:1');
    const b = two('acme/n:2');
    const shared = a.variants[0].instance;
    expect(b.variants[0].instance).toBe(shared);
    const all = [...new Set([...instancesOf(a), ...instancesOf(b)])];
    const d = decide(
      input({
        spec: canary,
        target: b,
        status: serving(a),
        route: routeTo(a),
        available: all,
        snapshot: (version) => [a, b].find((p) => p.version === version),
      }),
    );
    expect(weights(d)).toEqual({ [a.version]: 45, [b.version]: 5 });
    const status = renderStatus({
      decision: d,
      previous: serving(a),
      generation: 1,
      host: 'h',
      url: 'http://h',
      readyOf: () => 1,
      routeConditions: [],
      now,
    });
    const services = status.traffic!.map((t) => t.service);
    expect(services).toHaveLength(new Set(services).size);
    expect(Object.fromEntries(status.traffic!.map((t) => [t.service, t.weight]))).toEqual({
      [shared]: 50,
      [a.variants[1].instance]: 45,
      [b.variants[1].instance]: 5,
    });
  });

  it('a first version takes all the traffic at once: there is nothing to share it with', () => {
    const d = decide(input({ spec: canary, target: v1, status: {}, available: instancesOf(v1) }));
    expect(weights(d)).toEqual({ [v1.version]: 100 });
    expect(d.outcome.switched).toEqual({ from: undefined, to: v1.version });
  });

  it('holds the step until its bake is over, then promotes: all traffic, and the old version drains', () => {
    const baking = decide(
      input({
        spec: canary,
        target: v2,
        status: serving(v1, { rollout: atStep(1, 10, at(-30)) }),
        route: split(v1, v2, 10),
        available: both,
      }),
    );
    expect(weights(baking)).toEqual({ [v1.version]: 90, [v2.version]: 10 });
    expect(baking.requeueAfterMs).toBe(30_200);
    const done = decide(
      input({
        spec: canary,
        target: v2,
        status: serving(v1, { rollout: atStep(1, 10, at(-60)) }),
        route: split(v1, v2, 10),
        available: both,
      }),
    );
    expect(weights(done)).toEqual({ [v2.version]: 100 });
    expect(done.outcome.switched).toEqual({ from: v1.version, to: v2.version });
    expect(done.outcome.draining).toEqual([{ version: v1.version, services: instancesOf(v1), until: at(30) }]);
    expect(done.outcome.rollout).toMatchObject({ phase: 'Promoted', weight: 100 });
  });

  it('a restarted controller resumes the step the route shows, and bakes it again from now: it never skips a bake', () => {
    // The route took step 1, the status write that would have recorded it was lost.
    const d = decide(
      input({ spec: canary, target: v2, status: serving(v1), route: split(v1, v2, 10), available: both }),
    );
    expect(weights(d)).toEqual({ [v1.version]: 90, [v2.version]: 10 });
    expect(d.outcome.rollout).toMatchObject({ step: 1, stepStartedAt: at(0), nextStepAt: at(60) });
  });

  it('Linear: steps of stepPercent, every intervalSeconds, the variants keeping their weights inside each version', () => {
    const linear = {
      config: 'c',
      rollout: { strategy: 'Linear' as const, linear: { stepPercent: 25, intervalSeconds: 10 }, drainSeconds: 30 },
    };
    let route = routeTo(v1);
    let status = serving(v1);
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) {
      const d = decide(
        input({ spec: linear, target: v2, status, route, available: both, now: new Date(now.getTime() + i * 10_000) }),
      );
      seen.push(weights(d)[v2.version]);
      route = d.route!.length === 1 ? routeTo(v2) : split(v1, v2, weights(d)[v2.version]);
      status = { ...serving(v1), rollout: d.outcome.rollout };
    }
    expect(seen).toEqual([25, 50, 75, 100]);
  });

  it('a plan changed mid-rollout to one whose first step is above the share the route gives: goes to that step (BlueGreen: all of it)', () => {
    const linearAt25 = split(v1, v2, 25);
    const blueGreen = decide(
      input({
        spec: { config: 'c', rollout: { drainSeconds: 30 } },
        target: v2,
        status: serving(v1),
        route: linearAt25,
        available: both,
      }),
    );
    expect(weights(blueGreen)).toEqual({ [v2.version]: 100 });
    expect(blueGreen.outcome.switched).toEqual({ from: v1.version, to: v2.version });
    const wider = decide(
      input({
        spec: { ...canary, rollout: { ...canary.rollout, canary: { percent: 40, bakeSeconds: 60 } } },
        target: v2,
        status: serving(v1),
        route: linearAt25,
        available: both,
      }),
    );
    expect(weights(wider)).toEqual({ [v1.version]: 60, [v2.version]: 40 });
    expect(wider.outcome.rollout).toMatchObject({ phase: 'Progressing', step: 1, weight: 40 });
  });

  it('a failed check sends all traffic back to the serving version in one write; the new one drains, then scales to zero', () => {
    const checks = [{ name: 'errors', builtin: 'errorRate' as const, max: 0.05 }];
    const spec = { ...canary, rollout: { ...canary.rollout, analysis: { checks } } };
    const analysis = [
      { name: 'errors', value: '0.5', result: 'Failed' as const, failures: 1, inconclusive: 0, evaluatedAt: at(0) },
    ];
    const d = decide(
      input({
        spec,
        target: v2,
        status: serving(v1, { rollout: atStep(1, 10, at(-10)) }),
        route: split(v1, v2, 10),
        available: both,
        analysis,
      }),
    );
    expect(weights(d)).toEqual({ [v1.version]: 100 });
    // The status keeps the checks' records: which one failed, with its value.
    expect(d.outcome.rollout).toMatchObject({ phase: 'RolledBack', weight: 0, analysis });
    expect(d.outcome.progressing).toMatchObject({
      status: 'False',
      reason: 'AnalysisFailed',
      message: expect.stringContaining('errors = 0.5, outside its bound (<= 0.05)'),
    });
    expect(d.outcome.ended).toBe('AnalysisFailed');
    expect(d.outcome.events).toEqual([]);
    expect(d.outcome.draining).toEqual([{ version: v2.version, services: instancesOf(v2), until: at(30) }]);
    // Next round, after the drain: it stays failed, with no traffic and no replicas.
    const later = decide(
      input({
        spec,
        target: v2,
        status: serving(v1, { rollout: d.outcome.rollout }),
        route: routeTo(v1),
        available: both,
        now: new Date(now.getTime() + 31_000),
      }),
    );
    expect(weights(later)).toEqual({ [v1.version]: 100 });
    expect(later.deploy.find((x) => x.plan === v2)!.replicas.get(v2.variants[0].instance)).toBe(0);
    expect(later.outcome.expired).toBe(true);
    expect(later.outcome.rollout).toMatchObject({ phase: 'RolledBack', analysis });
  });

  it('holds a baked step while a check is inconclusive or not yet evaluated during it, and moves on once all passed', () => {
    const checks = [{ name: 'errors', builtin: 'errorRate' as const, max: 0.05, intervalSeconds: 10 }];
    const spec = { ...canary, rollout: { ...canary.rollout, analysis: { checks } } };
    const status = serving(v1, { rollout: atStep(1, 10, at(-60), {}, spec.rollout) });
    const inconclusive = [
      {
        name: 'errors',
        result: 'Inconclusive' as const,
        failures: 0,
        inconclusive: 1,
        evaluatedAt: at(-5),
        message: 'errors: no value (no series)',
      },
    ];
    const held = decide(
      input({ spec, target: v2, status, route: split(v1, v2, 10), available: both, analysis: inconclusive }),
    );
    expect(weights(held)).toEqual({ [v1.version]: 90, [v2.version]: 10 });
    expect(held.outcome.progressing).toMatchObject({
      reason: 'AnalysisPending',
      message: expect.stringContaining('errors: no value (no series)'),
    });
    const stale = [{ name: 'errors', result: 'Passed' as const, failures: 0, inconclusive: 0, evaluatedAt: at(-70) }];
    expect(
      weights(decide(input({ spec, target: v2, status, route: split(v1, v2, 10), available: both, analysis: stale }))),
    ).toEqual({ [v1.version]: 90, [v2.version]: 10 });
    const passed = [
      { name: 'errors', result: 'Passed' as const, value: '0', failures: 0, inconclusive: 0, evaluatedAt: at(-5) },
    ];
    const promoted = decide(
      input({ spec, target: v2, status, route: split(v1, v2, 10), available: both, analysis: passed }),
    );
    expect(weights(promoted)).toEqual({ [v2.version]: 100 });
    expect(promoted.outcome.rollout).toMatchObject({ phase: 'Promoted', analysis: passed });
  });

  it('a rollback holds under the same plan (spec changes that keep it do not retry), and a new attempt retries', () => {
    const rolledBack = atStep(1, 0, at(-10), { phase: 'RolledBack' as const });
    const other = decide(
      input({
        generation: 7,
        spec: { ...canary, rollout: { ...canary.rollout, drainSeconds: 5 } },
        target: v2,
        status: serving(v1, { rollout: rolledBack }),
        route: routeTo(v1),
        available: both,
      }),
    );
    expect(weights(other)).toEqual({ [v1.version]: 100 });
    expect(other.outcome.expired).toBe(true);
    const retried = decide(
      input({
        generation: 8,
        spec: { ...canary, rollout: { ...canary.rollout, attempt: 2 } },
        target: v2,
        status: serving(v1, { rollout: rolledBack }),
        route: routeTo(v1),
        available: both,
      }),
    );
    expect(weights(retried)).toEqual({ [v1.version]: 90, [v2.version]: 10 });
  });

  it('keeps the condition a rollback set (which check, which value) on the rounds after it', () => {
    const checks = [{ name: 'errors', builtin: 'errorRate' as const, max: 0.05 }];
    const spec = { ...canary, rollout: { ...canary.rollout, analysis: { checks } } };
    const analysis = [
      { name: 'errors', value: '0.5', result: 'Failed' as const, failures: 1, inconclusive: 0, evaluatedAt: at(0) },
    ];
    const first = decide(
      input({
        spec,
        target: v2,
        status: serving(v1, { rollout: atStep(1, 10, at(-10), {}, spec.rollout) }),
        route: split(v1, v2, 10),
        available: both,
        analysis,
      }),
    );
    const condition = { ...first.outcome.progressing!, observedGeneration: 1, lastTransitionTime: at(0) };
    const next = decide(
      input({
        spec,
        target: v2,
        status: serving(v1, { rollout: first.outcome.rollout, conditions: [condition] }),
        route: routeTo(v1),
        available: both,
      }),
    );
    expect(next.outcome.progressing).toMatchObject({
      reason: 'AnalysisFailed',
      message: first.outcome.progressing!.message,
    });
  });

  it('waits for approval before promotion when asked, and goes on once spec.rollout.approvedVersion names the version', () => {
    const spec = { ...canary, rollout: { ...canary.rollout, approval: { beforePromotion: true } } };
    const status = serving(v1, { rollout: atStep(1, 10, at(-61), {}, spec.rollout) });
    const held = decide(input({ spec, target: v2, status, route: split(v1, v2, 10), available: both }));
    expect(weights(held)).toEqual({ [v1.version]: 90, [v2.version]: 10 });
    expect(held.outcome.rollout).toMatchObject({ phase: 'Paused' });
    expect(held.outcome.progressing).toMatchObject({
      reason: 'WaitingForApproval',
      message: expect.stringContaining(`spec.rollout.approvedVersion to ${v2.version}`),
    });
    // Approving is a spec change (a new generation) that leaves the plan, its step and its bake as they are.
    const approved = decide(
      input({
        generation: 2,
        spec: { ...spec, rollout: { ...spec.rollout, approvedVersion: v2.version } },
        target: v2,
        status,
        route: split(v1, v2, 10),
        available: both,
      }),
    );
    expect(weights(approved)).toEqual({ [v2.version]: 100 });
  });

  it('aborts by a spec change: traffic back in one write, marked Aborted', () => {
    const spec = { ...canary, rollout: { ...canary.rollout, abortVersion: v2.version } };
    const d = decide(
      input({
        spec,
        target: v2,
        status: serving(v1, { rollout: atStep(1, 10, at(-10)) }),
        route: split(v1, v2, 10),
        available: both,
      }),
    );
    expect(weights(d)).toEqual({ [v1.version]: 100 });
    expect(d.outcome.rollout).toMatchObject({ phase: 'Aborted' });
  });

  it('previews the plan, and with dryRun creates nothing of the new version', () => {
    const bigger = plan('acme/m:2', 3, { cpus: '2', memory: '4Gi', gpus: 1 });
    const d = decide(
      input({
        spec: { ...canary, rollout: { ...canary.rollout, dryRun: true } },
        target: bigger,
        status: serving(v1),
        route: routeTo(v1),
        available: instancesOf(v1),
      }),
    );
    expect(d.outcome.preview).toEqual({
      version: bigger.version,
      steps: [
        { weight: 10, seconds: 60 },
        { weight: 100, seconds: 0 },
      ],
      replicas: 3,
      cpus: '6',
      memory: '12288Mi',
      gpus: 3,
      worstCaseSeconds: 120,
    });
    expect(d.deploy.map((x) => x.plan.version)).toEqual([v1.version]);
    expect(d.outcome.progressing).toMatchObject({ reason: 'DryRun' });
  });

  it('reports InsufficientCapacity before anything of the new version is created', () => {
    const d = decide(
      input({
        spec: canary,
        target: v2,
        status: serving(v1),
        route: routeTo(v1),
        available: instancesOf(v1),
        capacity: { ok: false, message: 'ResourceQuota ml/q leaves 0 of pods' },
      }),
    );
    expect(d.deploy.map((x) => x.plan.version)).toEqual([v1.version]);
    expect(d.outcome.progressing).toMatchObject({
      status: 'False',
      reason: 'InsufficientCapacity',
      message: expect.stringContaining('leaves 0 of pods'),
    });
  });

  it('runs the smoke test before any traffic: a failure stops the rollout with what was asked and answered', () => {
    const spec = { ...canary, rollout: { ...canary.rollout, smokeTest: { configMap: 'smoke' } } };
    const waiting = decide(input({ spec, target: v2, status: serving(v1), route: routeTo(v1), available: both }));
    expect(weights(waiting)).toEqual({ [v1.version]: 100 });
    const failed = decide(
      input({
        spec,
        target: v2,
        status: serving(v1),
        route: routeTo(v1),
        available: both,
        smokeTest: { passed: false, message: 'POST /predict to m-x answered 500, expected 200' },
      }),
    );
    expect(weights(failed)).toEqual({ [v1.version]: 100 });
    expect(failed.outcome.progressing).toMatchObject({
      reason: 'SmokeTestFailed',
      message: expect.stringContaining('answered 500, expected 200'),
    });
    const passed = decide(
      input({
        spec,
        target: v2,
        status: serving(v1),
        route: routeTo(v1),
        available: both,
        smokeTest: { passed: true, message: '1 request(s)' },
      }),
    );
    expect(passed.outcome.rollout?.smokeTest).toMatch(/^Passed/);
    const next = decide(
      input({
        spec,
        target: v2,
        status: serving(v1, { rollout: passed.outcome.rollout }),
        route: routeTo(v1),
        available: both,
      }),
    );
    expect(weights(next)).toEqual({ [v1.version]: 90, [v2.version]: 10 });
  });

  describe('the ROLLOUT column of kubectl get mle (status.rolloutSummary): only what a rollout under way means', () => {
    const column = (d: ReturnType<typeof decide>, previous: MachineLearningEndpointStatus) =>
      renderStatus({
        decision: d,
        previous,
        generation: 1,
        host: 'h',
        url: 'http://h',
        readyOf: () => 1,
        routeConditions: [],
        now,
      }).rolloutSummary;
    const blueGreen = { config: 'c', rollout: { drainSeconds: 30, progressDeadlineSeconds: 60 } };

    it('is empty for a first version, while it comes up and once it serves (no canary at 100% on an endpoint that never had one)', () => {
      const first = decide(input({ target: v1, available: instancesOf(v1) }));
      expect(first.outcome.rollout).toMatchObject({ phase: 'Promoted', step: 1, weight: 100 });
      expect(column(first, {})).toBeUndefined();
      const later = decide(
        input({
          target: v1,
          status: serving(v1, { rollout: first.outcome.rollout }),
          route: routeTo(v1),
          available: instancesOf(v1),
        }),
      );
      expect(column(later, serving(v1))).toBeUndefined();
      expect(column(decide(input({ target: v1 })), {})).toBeUndefined();
    });

    it('names the strategy, the step and the share while a new version rolls out, Paused while it waits for approval', () => {
      expect(
        column(
          decide(
            input({ spec: blueGreen, target: v2, status: serving(v1), route: routeTo(v1), available: instancesOf(v1) }),
          ),
          serving(v1),
        ),
      ).toBe('BlueGreen 0/1 0%');
      expect(
        column(
          decide(input({ spec: canary, target: v2, status: serving(v1), route: routeTo(v1), available: both })),
          serving(v1),
        ),
      ).toBe('Canary 1/2 10%');
      const spec = { ...canary, rollout: { ...canary.rollout, approval: { beforePromotion: true } } };
      const held = decide(
        input({
          spec,
          target: v2,
          status: serving(v1, { rollout: atStep(1, 10, at(-61), {}, spec.rollout) }),
          route: split(v1, v2, 10),
          available: both,
        }),
      );
      expect(column(held, serving(v1))).toBe('Canary 1/2 10% Paused');
    });

    it('is empty once the new version is promoted', () => {
      const done = decide(
        input({
          spec: canary,
          target: v2,
          status: serving(v1, { rollout: atStep(1, 10, at(-60)) }),
          route: split(v1, v2, 10),
          available: both,
        }),
      );
      expect(column(done, serving(v1))).toBeUndefined();
    });

    it('says how a rollout ended that did not promote, and Planned for a dry run', () => {
      const aborted = decide(
        input({
          spec: { ...canary, rollout: { ...canary.rollout, abortVersion: v2.version } },
          target: v2,
          status: serving(v1, { rollout: atStep(1, 10, at(-10)) }),
          route: split(v1, v2, 10),
          available: both,
        }),
      );
      expect(column(aborted, serving(v1))).toBe('Canary Aborted');
      const dryRun = decide(
        input({
          spec: { ...canary, rollout: { ...canary.rollout, dryRun: true } },
          target: v2,
          status: serving(v1),
          route: routeTo(v1),
          available: instancesOf(v1),
        }),
      );
      expect(column(dryRun, serving(v1))).toBe('Canary Planned');
    });
  });
});
