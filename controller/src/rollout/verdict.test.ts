// The verdict and the steps of an attempt, each phase on its own (decide.test.ts covers them assembled).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { advance, rolloutHistoryLimit } from './advance.ts';
import type { RolloutInput } from './decision.ts';
import { planOf } from './strategies.ts';
import { gated, prejudged, type Attempt, type RolloutSpec } from './verdict.ts';

const now = new Date('2026-12-06T12:00:00Z');
const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function plan(image: string): VersionPlan {
  const r = planFromTemplates('e', 'c', { models: [{ model: 'm', instances: 1 }] }, new Map([['m', { image }]]));
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
}
const target = plan('acme/m:2');

/** An attempt at `weightNow` of the traffic under `spec`, its workloads Available unless told otherwise. */
function attempt(o: {
  spec?: RolloutSpec;
  weightNow?: number;
  available?: boolean;
  input?: Partial<RolloutInput>;
  recorded?: Attempt['recorded'];
  pendingFor?: number;
}): Attempt {
  const spec = o.spec ?? { strategy: 'Canary', canary: { percent: 20, bakeSeconds: 60 } };
  const steps = planOf(spec);
  const base = {
    version: target.version,
    strategy: spec.strategy ?? 'BlueGreen',
    steps: steps.length,
    plan: 'p',
    ...(o.recorded?.history ? { history: o.recorded.history } : {}),
  };
  return {
    input: {
      generation: 1,
      spec: { config: 'c', rollout: spec },
      status: {},
      target,
      snapshot: () => undefined,
      workload: () => ({ ready: 1, available: o.available ?? true }),
      now,
      ...o.input,
    },
    spec,
    target,
    servingVersion: '1111111111',
    steps,
    strategy: base.strategy,
    base,
    recorded: o.recorded,
    weightNow: o.weightNow ?? 0,
    replicas: new Map(target.variants.map((v) => [v.instance, 1])),
    pendingSince: ago(o.pendingFor ?? 10),
    deadlineSeconds: 60,
    preview: { version: target.version, steps, replicas: 1, cpus: '0', memory: '0Mi', gpus: 0, worstCaseSeconds: 120 },
  };
}

describe('the verdict before anything is measured (prejudged)', () => {
  const cases: [string, Attempt, string | undefined, boolean][] = [
    // [what, attempt, the Progressing reason it gives (undefined: no verdict), expired]
    ['a fresh attempt: no verdict, the gates decide', attempt({}), undefined, false],
    [
      'rolled back before under this plan: stays rolled back',
      attempt({ recorded: { version: target.version, phase: 'RolledBack', plan: 'p', message: 'check failed' } }),
      'RolledBack',
      true,
    ],
    [
      'aborted by spec.rollout.abortVersion',
      attempt({ spec: { strategy: 'BlueGreen', abortVersion: target.version } }),
      'Aborted',
      true,
    ],
    [
      'a dry run: planned, nothing started',
      attempt({ spec: { strategy: 'BlueGreen', dryRun: true } }),
      'DryRun',
      false,
    ],
    [
      'no room beside the serving version',
      attempt({ input: { capacity: { ok: false, message: 'needs 4 CPUs, 1 free' } } }),
      'InsufficientCapacity',
      false,
    ],
  ];
  it.each(cases)('%s', (_what, a, reason, expired) => {
    const move = prejudged(a);
    expect(move?.progressing?.reason).toBe(reason);
    expect(move?.expired ?? false).toBe(expired);
  });

  it('an abort takes the traffic back and says where it is', () => {
    const move = prejudged(attempt({ spec: { strategy: 'Canary', abortVersion: target.version }, weightNow: 20 }))!;
    expect(move.targetWeight).toBe(0);
    expect(move.ended).toBe('Aborted');
    expect(move.progressing?.message).toContain('all traffic is on version 1111111111');
  });
});

describe('the gates (gated)', () => {
  it('rolls back a canary that lost ready replicas while it took traffic', () => {
    const move = gated(attempt({ weightNow: 20, available: false }))!;
    expect([move.ended, move.expired, move.targetWeight]).toEqual(['CanaryUnavailable', true, 0]);
  });

  it('waits for Available until the deadline, then fails without taking traffic back (it had none)', () => {
    const waiting = gated(attempt({ available: false, pendingFor: 10 }))!;
    expect([waiting.expired, waiting.requeueMs, waiting.rollout.phase]).toEqual([undefined, 51_000, 'Progressing']);
    const late = gated(attempt({ available: false, pendingFor: 61 }))!;
    expect([late.expired, late.ended, late.rollout.phase]).toEqual([true, undefined, 'Failed']);
  });

  it('runs no deadline down while the route cannot be written', () => {
    const blocked = { routeBlocked: { type: 'Ready', status: 'False' as const, reason: 'HostConflict', message: 'x' } };
    const move = gated(attempt({ available: true, pendingFor: 600, input: blocked }))!;
    expect([move.expired, move.requeueMs]).toEqual([undefined, undefined]);
  });

  it('holds for the smoke test before any traffic, then fails or passes on its result', () => {
    const spec: RolloutSpec = { strategy: 'BlueGreen', smokeTest: { configMap: 'smoke' } };
    expect(gated(attempt({ spec }))!.rollout.message).toBe('waiting for the smoke test');
    const failed = gated(attempt({ spec, input: { smokeTest: { passed: false, message: 'status 500' } } }))!;
    expect([failed.ended, failed.rollout.smokeTest]).toEqual(['SmokeTestFailed', 'Failed: status 500']);
    const passed = gated(attempt({ spec, input: { smokeTest: { passed: true, message: '200' } } }))!;
    expect(passed.rollout.smokeTest).toBe('Passed: 200');
  });

  it('gives no verdict to an Available version without a smoke test: its steps go on', () => {
    expect(gated(attempt({}))).toBeUndefined();
  });
});

describe('the steps (advance)', () => {
  it('takes the first step, then bakes it, then promotes', () => {
    const first = advance(attempt({}));
    expect([first.targetWeight, first.rollout.step, first.requeueMs, first.events?.[0]?.reason]).toEqual([
      20,
      1,
      60_200,
      'RolloutStep',
    ]);
    const recorded = { ...first.rollout, stepStartedAt: ago(30) };
    const baking = advance(attempt({ weightNow: 20, recorded }));
    expect([baking.targetWeight, baking.promote, baking.requeueMs]).toEqual([20, undefined, 30_200]);
    const baked = advance(attempt({ weightNow: 20, recorded: { ...recorded, stepStartedAt: ago(61) } }));
    expect([baked.promote, baked.rollout.phase, baked.rollout.weight]).toEqual([true, 'Promoted', 100]);
  });

  it('holds a baked step for a check not evaluated during it', () => {
    const spec: RolloutSpec = {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 5 },
      analysis: { checks: [{ name: 'errors', query: 'vector(0)', max: 0.05 }] },
    };
    const recorded = {
      ...attempt({}).base,
      phase: 'Progressing' as const,
      step: 1,
      weight: 20,
      stepStartedAt: ago(30),
    };
    const move = advance(attempt({ spec, weightNow: 20, recorded }));
    expect(move.progressing?.reason).toBe('AnalysisPending');
    expect(move.rollout.message).toBe('step baked; holding for the checks: errors: not evaluated during this step yet');
  });

  it('pauses before promotion until the version is approved', () => {
    const spec: RolloutSpec = {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 5 },
      approval: { beforePromotion: true },
    };
    const recorded = {
      ...attempt({}).base,
      phase: 'Progressing' as const,
      step: 1,
      weight: 20,
      stepStartedAt: ago(30),
    };
    expect(advance(attempt({ spec, weightNow: 20, recorded })).rollout.phase).toBe('Paused');
    const approved = advance(attempt({ spec: { ...spec, approvedVersion: target.version }, weightNow: 20, recorded }));
    expect(approved.promote).toBe(true);
  });
});

describe('the history of the steps taken (status.rollout.history)', () => {
  it('does not grow while the route has not reached the step taken (the data plane not ready for it yet)', () => {
    // Each round finds the route still at 0% for the pending version and takes step 1 again.
    let recorded: Attempt['recorded'];
    for (let round = 0; round < 60; round++) recorded = advance(attempt({ weightNow: 0, recorded })).rollout;
    expect(recorded!.history).toHaveLength(1);
    expect(recorded!.history![0]).toMatchObject({ step: 1, weight: 20, startedAt: ago(0) });
  });

  it('keeps the last 50 steps of a Linear plan of 100 (more would be refused by the schema)', () => {
    const spec: RolloutSpec = { strategy: 'Linear', linear: { stepPercent: 1, intervalSeconds: 0 } };
    let recorded: Attempt['recorded'];
    let weight = 0;
    for (let round = 0; round < 99; round++) {
      const move = advance(attempt({ spec, weightNow: weight, recorded }));
      recorded = move.rollout;
      weight = move.targetWeight ?? weight;
    }
    expect(weight).toBe(99);
    expect(recorded!.history).toHaveLength(rolloutHistoryLimit);
    expect(recorded!.history!.at(-1)).toMatchObject({ step: 99, weight: 99 });
    const schema = JSON.parse(
      readFileSync(new URL('../../../schemas/machinelearningendpoint.schema.json', import.meta.url), 'utf8'),
    ) as { properties: { status: { properties: { rollout: { properties: { history: { maxItems: number } } } } } } };
    expect(rolloutHistoryLimit).toBe(schema.properties.status.properties.rollout.properties.history.maxItems);
  });
});
