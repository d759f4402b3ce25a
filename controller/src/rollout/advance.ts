// The steps of a rollout that the gates let go on (decide.ts, verdict.ts): the step the route is
// at, its bake, the checks it holds for, the approval before promotion, and the next step or the
// promotion itself. Pure.
import type { RolloutStatus, RolloutStep } from '../api/generated.ts';
import { iso } from '../desired/status.ts';
import { unsettled } from './analysis.ts';
import type { Attempt, Move } from './verdict.ts';

/** The most steps status.rollout.history holds (the schema's maxItems): the latest are kept. */
export const rolloutHistoryLimit = 50;

/**
 * The history with a step taken now: a step taken again because the route has not carried it yet
 * (the data plane had not loaded its backends) replaces its own entry instead of adding one, and only
 * the latest `rolloutHistoryLimit` steps are kept: a status the schema refuses could never be written.
 */
export function withStep(history: readonly RolloutStep[] | undefined, step: RolloutStep): RolloutStep[] {
  const last = history?.at(-1);
  const before =
    last && last.step === step.step && last.weight === step.weight ? history!.slice(0, -1) : (history ?? []);
  return [...before, step].slice(-rolloutHistoryLimit);
}

/** Where the rollout stands on its plan this round. */
interface Position {
  /** The planned step the route is at (-1: below the first, which is next). */
  at: number;
  /** When that step began: as recorded, or now (a restarted controller never skips a bake). */
  startedAt: string;
  /** What every status.rollout of this round carries besides the phase. */
  carried: Partial<RolloutStatus>;
}

/** The step the route is at, baked or not, held for its checks or its approval, or the next one taken. */
export function advance(a: Attempt): Move {
  const { input, steps, recorded, weightNow } = a;
  const { now } = input;
  // The last planned step at or below the weight the route gives the version; none (-1) when the
  // route is below the first (a plan changed mid-rollout): that step is next.
  const at = weightNow === 0 ? -1 : steps.reduce((k, s, i) => (s.weight <= weightNow ? i : k), -1);
  const startedAt = recorded?.step === at + 1 && recorded.stepStartedAt ? recorded.stepStartedAt : iso(now);
  const analysis =
    at >= 0 && input.analysis?.length
      ? { analysis: input.analysis }
      : recorded?.analysis
        ? { analysis: recorded.analysis }
        : {};
  const p: Position = {
    at,
    startedAt,
    carried: { ...(recorded?.smokeTest ? { smokeTest: recorded.smokeTest } : {}), ...analysis },
  };
  const bakeMs = at >= 0 ? steps[at].seconds * 1000 : 0;
  const baked = at < 0 || now.getTime() - Date.parse(startedAt) >= bakeMs;
  if (!baked) return baking(a, p, Date.parse(startedAt) + bakeMs);
  // A baked step moves on once every check passed during it; inconclusive ones hold it.
  const waiting = at >= 0 ? unsettled(a.spec.analysis?.checks ?? [], input.analysis ?? [], startedAt) : [];
  if (waiting.length > 0) {
    const why = waiting
      .map(({ check, record }) =>
        record?.result && record.evaluatedAt && Date.parse(record.evaluatedAt) >= Date.parse(startedAt)
          ? record.message
          : `${check.name}: not evaluated during this step yet`,
      )
      .join('; ');
    return holding(a, p, why);
  }
  const next = at + 1;
  const approval =
    next === steps.length - 1 &&
    a.spec.approval?.beforePromotion &&
    a.spec.approvedVersion !== a.target.version &&
    at >= 0;
  if (approval) return awaitingApproval(a, p);
  return steps[next].weight >= 100 ? promotion(a, p) : nextStep(a, p);
}

/** The rollout at the step the route is at (phase Progressing unless given). */
function atStep(a: Attempt, p: Position, more: Partial<RolloutStatus>): RolloutStatus {
  return {
    ...a.base,
    ...p.carried,
    phase: 'Progressing',
    step: p.at + 1,
    weight: a.weightNow,
    stepStartedAt: p.startedAt,
    history: a.base.history ?? [],
    ...more,
  };
}

function baking(a: Attempt, p: Position, due: number): Move {
  const { target, steps, weightNow } = a;
  return {
    targetWeight: weightNow,
    requeueMs: due - a.input.now.getTime() + 200,
    rollout: atStep(a, p, { nextStepAt: iso(new Date(due)) }),
    progressing: {
      type: 'Progressing',
      status: 'True',
      reason: 'RolloutProgressing',
      message: `config version ${target.version}: step ${p.at + 1} of ${steps.length} (${a.strategy}), ${weightNow}% of the traffic, next step at ${iso(new Date(due))}`,
    },
  };
}

function holding(a: Attempt, p: Position, why: string): Move {
  const { target, steps, weightNow } = a;
  return {
    targetWeight: weightNow,
    rollout: atStep(a, p, { message: `step baked; holding for the checks: ${why}` }),
    progressing: {
      type: 'Progressing',
      status: 'True',
      reason: 'AnalysisPending',
      message: `config version ${target.version}: step ${p.at + 1} of ${steps.length} (${a.strategy}), ${weightNow}% of the traffic, baked; holding for the checks: ${why}`,
    },
  };
}

function awaitingApproval(a: Attempt, p: Position): Move {
  const { target, weightNow } = a;
  return {
    targetWeight: weightNow,
    rollout: atStep(a, p, { phase: 'Paused', message: 'waiting for approval' }),
    progressing: {
      type: 'Progressing',
      status: 'True',
      reason: 'WaitingForApproval',
      message: `config version ${target.version} takes ${weightNow}% of the traffic and waits for approval: set spec.rollout.approvedVersion to ${target.version} to send it all the traffic, or spec.rollout.abortVersion to ${target.version} to send it none`,
    },
  };
}

/** All traffic to the new version in one write; the previous one drains (decide.ts). */
function promotion(a: Attempt, p: Position): Move {
  const now = iso(a.input.now);
  const steps = a.steps.length;
  return {
    promote: true,
    rollout: {
      ...a.base,
      ...p.carried,
      phase: 'Promoted',
      step: steps,
      weight: 100,
      stepStartedAt: now,
      history: withStep(a.base.history, { step: steps, weight: 100, startedAt: now }),
    },
  };
}

function nextStep(a: Attempt, p: Position): Move {
  const { target, steps, input } = a;
  const next = p.at + 1;
  const weight = steps[next].weight;
  const due = iso(new Date(input.now.getTime() + steps[next].seconds * 1000));
  return {
    targetWeight: weight,
    requeueMs: steps[next].seconds * 1000 + 200,
    rollout: {
      ...a.base,
      ...p.carried,
      phase: 'Progressing',
      step: next + 1,
      weight,
      stepStartedAt: iso(input.now),
      nextStepAt: due,
      history: withStep(a.base.history, { step: next + 1, weight, startedAt: iso(input.now) }),
    },
    progressing: {
      type: 'Progressing',
      status: 'True',
      reason: 'RolloutProgressing',
      message: `config version ${target.version}: step ${next + 1} of ${steps.length} (${a.strategy}), ${weight}% of the traffic, next step at ${due}`,
    },
    events: [
      {
        type: 'Normal',
        reason: 'RolloutStep',
        message: `config version ${target.version} takes ${weight}% of the traffic (step ${next + 1} of ${steps.length})`,
      },
    ],
  };
}
