import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointConfigSpec, MachineLearningEndpointStatus, ShadowTest } from '../api/generated.ts';
import type { ComparisonFigures } from '../compare/statistics.ts';
import { planFromSnapshot, planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { configInstance, configInstanceStatus, modelInstance } from '../desired/snapshots.ts';
import { defaultConfig } from '../options/config.ts';
import type { MachineLearningEndpoint, MachineLearningModel, MachineLearningEndpointConfig } from '../api/generated.ts';
import { decide, type RolloutInput } from './decide.ts';
import { renderStatus } from './status.ts';
import { promotedPlan, promotingShadow, promotionMark, promotionRecord, testSubject } from './shadow-tests.ts';

const start = new Date('2026-12-01T00:00:00Z');
const later = (seconds: number) => new Date(start.getTime() + seconds * 1000);
const models = new Map([
  ['m', { image: 'acme/m:1' }],
  ['cand', { image: 'acme/cand:1' }],
]);

function plan(test: ShadowTest | undefined, candImage = 'acme/cand:1'): VersionPlan {
  const spec: MachineLearningEndpointConfigSpec = {
    models: [{ model: 'm' }, { model: 'cand', shadow: { percent: 100, ...(test ? { test } : {}) } }],
  };
  const r = planFromTemplates('e', 'c', spec, new Map([...models, ['cand', { image: candImage }]]));
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}

/** Figures of `compared` requests, one prediction each, `agreeing` of them equal; latencies 10 and 11 ms. */
function figures(compared: number, agreeing: number): ComparisonFigures {
  return {
    requests: compared,
    compared,
    predictions: compared,
    agreeing,
    agreement: compared ? agreeing / compared : undefined,
    shadowUnreadable: 0,
    servingUnreadable: 0,
    serving: { errors: 0, errorRate: 0, latencyP50Ms: 5, latencyP99Ms: 10 },
    shadow: { errors: 0, errorRate: 0, latencyP50Ms: 5, latencyP99Ms: 11 },
  };
}

/**
 * One reconcile of an endpoint serving `p`: the decision from the last status, then the status it
 * renders with what the agents report (`reported`), fed to the next round.
 */
function round(
  p: VersionPlan,
  previous: MachineLearningEndpointStatus,
  now: Date,
  o: { available?: string[]; reported?: ComparisonFigures; noneReported?: boolean } = {},
) {
  const available = new Set(o.available ?? p.variants.map((v) => v.instance));
  const input: RolloutInput = {
    generation: 1,
    spec: { config: 'c' },
    status: previous,
    target: p,
    snapshot: (version) => (version === p.version ? p : undefined),
    route: { versions: new Map([[p.version, 100]]), services: [p.variants[0].instance] },
    workload: (v, replicas) => ({
      ready: available.has(v.instance) ? replicas : 0,
      available: available.has(v.instance),
    }),
    now,
  };
  const decision = decide(input);
  const status = renderStatus({
    decision,
    previous,
    generation: 1,
    host: 'h',
    url: 'http://h',
    readyOf: () => 1,
    routeConditions: [],
    // Every pod answered (a map, empty when none reports on the shadow), or not (undefined).
    figures: o.reported ? new Map([[p.variants[1].instance, o.reported]]) : o.noneReported ? new Map() : undefined,
    now,
  });
  const shadow = p.variants[1].instance;
  return {
    decision,
    status,
    test: status.shadows?.find((s) => s.service === shadow)?.test,
    condition: status.conditions?.find((c) => c.type === 'ShadowTested'),
    replicas: decision.deploy.at(-1)!.replicas.get(shadow),
    mirrored: (decision.agentMirrors ?? []).some((m) => m.service === shadow),
  };
}

const servingStatus = (p: VersionPlan): MachineLearningEndpointStatus => ({
  endpointConfigVersion: p.version,
  state: 'InService',
  traffic: [
    {
      variant: 'm',
      version: p.version,
      modelVersion: p.variants[0].version,
      service: p.variants[0].instance,
      weight: 100,
    },
  ],
});

describe('a shadow test', () => {
  const test: ShadowTest = { durationSeconds: 3600, minCompared: 50, criteria: { agreement: 0.9 } };

  it('begins when the shadow is first mirrored to, not when it is declared', () => {
    const p = plan(test);
    const waiting = round(p, servingStatus(p), start, { available: [p.variants[0].instance] });
    expect(waiting.test).toMatchObject({ phase: 'Pending', reason: 'Waiting', subject: testSubject(p, p.variants[1]) });
    expect(waiting.test).not.toHaveProperty('startedAt');
    expect(waiting.condition).toMatchObject({ status: 'Unknown', reason: 'Waiting' });

    const mirrored = round(p, waiting.status, later(30));
    expect(mirrored.test).toMatchObject({ phase: 'Pending', reason: 'Observing', startedAt: later(30).toISOString() });
    const observing = round(p, mirrored.status, later(40), { reported: figures(20, 19) });
    expect(observing.test).toMatchObject({ phase: 'Pending', startedAt: later(30).toISOString(), compared: 20 });
    expect(observing.test!.message).toContain('agreement so far 0.95');
  });

  it('that disagrees beyond doubt fails before its end, stops the shadow and keeps its verdict', () => {
    const p = plan(test);
    let s = round(p, servingStatus(p), start).status;
    // 60 of 200 agree: the upper end of the 99.9% interval (0.40) is far under 0.9, 10 minutes in.
    const failed = round(p, s, later(600), { reported: figures(200, 60) });
    expect(failed.test).toMatchObject({
      phase: 'Failed',
      reason: 'AgreementTooLow',
      action: 'Stop',
      compared: 200,
      agreement: 0.3,
      decidedAt: later(600).toISOString(),
    });
    expect(failed.condition).toMatchObject({ status: 'False', reason: 'AgreementTooLow' });
    expect(failed.condition!.message).toContain('agreement 0.3 (60/200) < 0.9');
    expect(failed.condition!.message).toContain('stopped: no longer mirrored to, scaled to 0');
    // The verdict it rendered has not acted yet: the next round decides from it.
    expect(failed.replicas).toBe(1);
    s = failed.status;
    const stopped = round(p, s, later(610), { reported: figures(200, 60) });
    expect(stopped.replicas).toBe(0);
    expect(stopped.mirrored).toBe(false);
    // The serving variant is untouched.
    expect(stopped.decision.route!.map((b) => [b.service, b.weight])).toEqual([[p.variants[0].instance, 100]]);
    // Better figures later do not undo the verdict.
    const after = round(p, stopped.status, later(4000), { reported: figures(5000, 5000) });
    expect(after.test).toMatchObject({ phase: 'Failed', decidedAt: later(600).toISOString() });
    expect(after.replicas).toBe(0);
  });

  it('keeps its record and condition while the serving version cannot be read', () => {
    const p = plan(test);
    const s = round(p, servingStatus(p), start).status;
    const failed = round(p, s, later(600), { reported: figures(200, 60) });
    const stopped = round(p, failed.status, later(610));
    // A round whose serving version is unreadable (its snapshot not in the cache yet, say).
    const unreadable = renderStatus({
      decision: {
        ...stopped.decision,
        outcome: { ...stopped.decision.outcome, serving: undefined, unreadable: p.version },
      },
      previous: stopped.status,
      generation: 1,
      host: 'h',
      url: 'http://h',
      readyOf: () => 1,
      routeConditions: [],
      now: later(620),
    });
    expect(unreadable.shadows).toEqual(stopped.status.shadows);
    expect(unreadable.conditions!.find((c) => c.type === 'ShadowTested')).toMatchObject({
      status: 'False',
      reason: 'AgreementTooLow',
    });
    // And the next readable round still stops the shadow.
    expect(round(p, unreadable, later(630)).replicas).toBe(0);
  });

  it('with onFail: Report only reports', () => {
    const p = plan({ ...test, onFail: 'Report' });
    const s = round(p, servingStatus(p), start).status;
    const failed = round(p, s, later(600), { reported: figures(200, 60) });
    expect(failed.test).toMatchObject({ phase: 'Failed', action: 'Report' });
    const next = round(p, failed.status, later(610), { reported: figures(200, 60) });
    expect(next.replicas).toBe(1);
    expect(next.mirrored).toBe(true);
  });

  it('that agrees passes only at its end, and one with too few compared fails then', () => {
    const p = plan(test);
    const s = round(p, servingStatus(p), start).status;
    const early = round(p, s, later(1800), { reported: figures(1000, 990) });
    expect(early.test).toMatchObject({ phase: 'Pending', reason: 'Observing' });
    const passed = round(p, early.status, later(3600), { reported: figures(1000, 990) });
    expect(passed.test).toMatchObject({ phase: 'Passed', reason: 'Passed', action: 'Report', agreement: 0.99 });
    expect(passed.condition).toMatchObject({ status: 'True', reason: 'Passed' });
    expect(passed.condition!.message).toContain('agreement 0.99 >= 0.9');
    expect(round(p, passed.status, later(3610)).replicas).toBe(1);

    const few = round(p, s, later(3600), { reported: figures(49, 49) });
    expect(few.test).toMatchObject({ phase: 'Failed', reason: 'TooFewCompared' });
    // A shadow no agent reports on when the time is up (it stopped being ready) is judged all the same,
    const silent = round(p, early.status, later(3600), { noneReported: true });
    expect(silent.test).toMatchObject({ phase: 'Failed', reason: 'TooFewCompared', compared: 0 });
    // but not in a round where some serving pod did not answer: its tallies would be missing.
    const partial = round(p, early.status, later(3600));
    expect(partial.test).toMatchObject({ phase: 'Pending', compared: 1000 });
  });

  it('keeps its start when only its criteria change, and begins again for another shadow model', () => {
    const p = plan(test);
    const s = round(p, servingStatus(p), start).status;
    // Other criteria: another config version over the same instances.
    const stricter = plan({ ...test, criteria: { agreement: 0.99 } });
    expect(stricter.version).not.toBe(p.version);
    expect(stricter.variants.map((v) => v.instance)).toEqual(p.variants.map((v) => v.instance));
    const moved = { ...s, endpointConfigVersion: stricter.version };
    const kept = round(stricter, moved, later(3600), { reported: figures(1000, 985) });
    expect(kept.test).toMatchObject({ phase: 'Failed', reason: 'CriteriaNotMet', startedAt: start.toISOString() });

    const other = plan(test, 'acme/cand:2');
    const anew = round(other, { ...s, endpointConfigVersion: other.version }, later(3600));
    expect(anew.test).toMatchObject({ phase: 'Pending', startedAt: later(3600).toISOString() });
  });
});

describe('a promotion', () => {
  const test: ShadowTest = { durationSeconds: 60, criteria: { agreement: 0.9 }, onPass: 'Promote' };

  it('serves the tested shadow from its own instance, without rewriting the config', () => {
    const p = plan(test);
    const shadow = promotingShadow(p)!;
    expect(shadow.variant.model).toBe('cand');
    const d = promotedPlan('e', p, shadow);
    expect(d.variants.map((v) => [v.variant.model, v.instance, v.variant.shadow])).toEqual([
      ['cand', shadow.instance, undefined],
    ]);
    expect(d.spec.models).toEqual([{ model: 'cand', instances: 1 }]);
    // The same tested version, the same promoted one.
    expect(promotedPlan('e', p, shadow).version).toBe(d.version);
    expect(d.version).not.toBe(p.version);
    expect(d.promoted).toBe(promotionMark(p, shadow));
    // Its snapshot keeps the mark, read back as the same plan.
    const endpoint = { metadata: { name: 'e', namespace: 'ns', uid: 'u' } } as MachineLearningEndpoint;
    const ctx = { endpoint, config: defaultConfig };
    const snapshot = {
      ...configInstance(ctx, d).object,
      status: configInstanceStatus(d),
    } as unknown as MachineLearningEndpointConfig;
    expect(snapshot.metadata.labels).toMatchObject({ 'ml-operator.dev/promoted': d.promoted });
    const modelSnapshots = new Map(
      d.variants.map((v) => [v.instance, modelInstance(ctx, v).object as unknown as MachineLearningModel]),
    );
    const read = planFromSnapshot(snapshot, modelSnapshots)!;
    expect(read).toMatchObject({ version: d.version, promoted: d.promoted });
    expect(read.variants.map((v) => v.instance)).toEqual([shadow.instance]);
  });

  it('runs at least the replicas the serving variant it replaces could, on the same instance', () => {
    const spec = (serving: Record<string, unknown>, candidate: Record<string, unknown> = {}) => {
      const r = planFromTemplates(
        'e',
        'c',
        {
          models: [
            { model: 'm', ...serving },
            { model: 'cand', ...candidate, shadow: { percent: 10, test } },
          ],
        },
        models,
      );
      if (!r.ok) throw new Error('unresolved');
      return promotedPlan('e', r.plan, r.plan.variants[1]);
    };
    expect(spec({ instances: 4 }).spec.models[0]).toEqual({ model: 'cand', instances: 4 });
    expect(spec({ instances: 1 }, { instances: 3 }).spec.models[0]).toMatchObject({ instances: 3 });
    const scaling = { minInstances: 2, maxInstances: 6, target: { cpuUtilization: 60 } };
    expect(spec({ autoscaling: scaling }).spec.models[0]).toMatchObject({ instances: 6 });
    expect(
      spec({ instances: 4 }, { cpus: '1', autoscaling: { ...scaling, minInstances: 1, maxInstances: 3 } }).spec
        .models[0].autoscaling,
    ).toMatchObject({ minInstances: 4, maxInstances: 4 });
    // Neither count is part of the model version: the shadow's pods, scaled in place.
    const r = planFromTemplates(
      'e',
      'c',
      {
        models: [
          { model: 'm', instances: 4 },
          { model: 'cand', shadow: { percent: 10, test } },
        ],
      },
      models,
    );
    if (!r.ok) throw new Error('unresolved');
    expect(promotedPlan('e', r.plan, r.plan.variants[1]).variants[0].instance).toBe(r.plan.variants[1].instance);
  });

  it('is due only on a passed test of the same subject', () => {
    const p = plan(test);
    const s = round(p, servingStatus(p), start).status;
    expect(promotionRecord(p, s)?.phase).not.toBe('Passed');
    const passed = round(p, s, later(60), { reported: figures(100, 100) });
    expect(passed.test).toMatchObject({ phase: 'Passed', action: 'Promote' });
    expect(passed.condition!.message).toContain('promoted: the version with it serving rolls out');
    expect(promotionRecord(p, passed.status)?.phase).toBe('Passed');
    expect(promotionRecord(plan(test, 'acme/cand:2'), passed.status)?.phase).not.toBe('Passed');
    const failed = round(p, s, later(60), { reported: figures(100, 10) });
    expect(promotionRecord(p, failed.status)?.phase).not.toBe('Passed');
  });
});
