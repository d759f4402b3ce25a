// The verdict on the pending version this round (decide.ts): whether its attempt is over (failed
// before under this plan, aborted, failed a gate), held (a dry run, no capacity, not Available yet,
// its smoke test running), or free to advance its steps (advance.ts). Pure: the gates' results come
// in the RolloutInput, read or run by the reconciler.
import type { MachineLearningEndpointSpec, RolloutPreview, RolloutStatus } from '../api/generated.ts';
import { isShadow, type VersionPlan } from '../desired/plan.ts';
import { findCondition, type ConditionInput } from '../desired/status.ts';
import { failing } from './analysis.ts';
import type { RolloutEvent, RolloutInput } from './decision.ts';
import type { Step } from './strategies.ts';

export type RolloutSpec = NonNullable<MachineLearningEndpointSpec['rollout']>;

/** The attempt to roll out the target version, as this round finds it. */
export interface Attempt {
  input: RolloutInput;
  spec: RolloutSpec;
  target: VersionPlan;
  servingVersion?: string;
  steps: Step[];
  strategy: string;
  /** What every status.rollout of this attempt carries (version, strategy, plan, history). */
  base: RolloutStatus;
  /** The rollout of this version under this plan, as status last recorded it. */
  recorded?: RolloutStatus;
  /** The target's share of the live route now. */
  weightNow: number;
  /** The replicas each of its instances runs while it rolls out. */
  replicas: Map<string, number>;
  pendingSince: string;
  deadlineSeconds: number;
  preview: RolloutPreview;
}

/** What the round does with the pending version. */
export interface Move {
  rollout: RolloutStatus;
  progressing?: ConditionInput;
  /** The pending version's share of the route to write (none when omitted). */
  targetWeight?: number;
  /** The attempt is over: what only it runs scales to zero once it no longer drains. */
  expired?: boolean;
  /** Ended this round without promotion, for this reason: what took traffic of it drains. */
  ended?: string;
  /** All the traffic to the pending version, this round. */
  promote?: boolean;
  requeueMs?: number;
  events?: RolloutEvent[];
}

const failedPhases = new Set(['Failed', 'RolledBack', 'Aborted']);

/** Ends the attempt: all traffic back to the serving version in one write; what took traffic drains, then scales to zero. */
export function failMove(
  a: Attempt,
  phase: 'Failed' | 'RolledBack' | 'Aborted',
  reason: string,
  message: string,
): Move {
  const back = a.servingVersion ? `all traffic is on version ${a.servingVersion}` : 'nothing serves';
  return {
    expired: true,
    targetWeight: 0,
    rollout: { ...a.base, phase, step: 0, weight: 0, message },
    progressing: {
      type: 'Progressing',
      status: 'False',
      reason,
      message: `${message}; ${back}. Fix the model or config and apply it, or bump spec.rollout.attempt to try this version again.`,
    },
    // The Event comes with the condition turning False (the reconciler records each such transition).
    ended: reason,
  };
}

/**
 * What holds or ends the attempt before anything is measured: a failure under this plan (no retry
 * until the plan or the attempt changes; a deadline that ran out, for this generation only), an
 * abort, a dry run, too little capacity to start. Undefined: the gates decide (`gated`).
 */
export function prejudged(a: Attempt): Move | undefined {
  const { input, spec, target, recorded, base } = a;
  const previous = findCondition(input.status.conditions, 'Progressing');
  const deadlineFailed = deadlineRanOut(input, target.version);
  const failedBefore =
    deadlineFailed ||
    (recorded?.phase !== undefined &&
      failedPhases.has(recorded.phase) &&
      (recorded.phase !== 'Failed' || recorded.smokeTest?.startsWith('Failed') === true));
  if (failedBefore) {
    const rollout = recorded ?? { ...base, phase: 'Failed', step: 0, weight: 0, message: previous?.message };
    if (deadlineFailed)
      return { expired: true, rollout, progressing: { ...condition(previous), reason: 'ProgressDeadlineExceeded' } };
    if (!recorded) return { expired: true, rollout };
    // The condition the failure set (AnalysisFailed, CanaryUnavailable, SmokeTestFailed, ...) stays as it was.
    const kept =
      previous?.status === 'False' && previous.reason !== 'ProgressDeadlineExceeded'
        ? condition(previous)
        : {
            ...condition({ message: recorded.message ?? '' }),
            reason:
              recorded.phase === 'Aborted'
                ? 'Aborted'
                : recorded.phase === 'RolledBack'
                  ? 'RolledBack'
                  : 'RolloutFailed',
          };
    return { expired: true, rollout, progressing: kept };
  }
  if (spec.abortVersion === target.version)
    return failMove(
      a,
      'Aborted',
      'Aborted',
      `the rollout of config version ${target.version} was aborted (spec.rollout.abortVersion)`,
    );
  if (spec.dryRun)
    return {
      rollout: {
        ...base,
        phase: 'Planned',
        step: 0,
        weight: 0,
        message: 'dry run: status.preview shows the plan; nothing of the new version is created',
      },
      progressing: {
        type: 'Progressing',
        status: 'True',
        reason: 'DryRun',
        message: `dry run of config version ${target.version}: ${a.preview.steps!.map((s) => `${s.weight}% for ${s.seconds}s`).join(', ')}; adds ${a.preview.replicas} replicas (${a.preview.cpus} CPUs, ${a.preview.memory}, ${a.preview.gpus} GPUs); at most ${a.preview.worstCaseSeconds}s. Set spec.rollout.dryRun to false to start it.`,
      },
    };
  if (input.capacity && !input.capacity.ok && a.weightNow === 0)
    return {
      rollout: { ...base, phase: 'Progressing', step: 0, weight: 0, message: input.capacity.message },
      progressing: {
        type: 'Progressing',
        status: 'False',
        reason: 'InsufficientCapacity',
        message: `config version ${target.version} is not started: ${input.capacity.message}`,
      },
      requeueMs: 30_000,
    };
  return undefined;
}

/** Whether this version's progress deadline ran out under this generation of the spec. */
export function deadlineRanOut(input: RolloutInput, version: string): boolean {
  const { status } = input;
  const previous = findCondition(status.conditions, 'Progressing');
  // A failed version is not pending any more: status.rollout names it (a status of an older release, the pending version).
  const failedVersion = status.pendingEndpointConfigVersion ?? status.rollout?.version;
  return (
    previous?.reason === 'ProgressDeadlineExceeded' &&
    failedVersion === version &&
    previous.observedGeneration === input.generation
  );
}

/** A False Progressing condition saying what an earlier round said. */
function condition(previous: { reason?: string; message?: string } | undefined): ConditionInput {
  return { type: 'Progressing', status: 'False', reason: previous?.reason ?? '', message: previous?.message ?? '' };
}

/**
 * The gates: the pending version's workloads Available (shadows never hold up a switch), its
 * metric checks, its smoke test before it takes any traffic. Undefined: it may take its next step.
 */
export function gated(a: Attempt): Move | undefined {
  const { input, spec, target, base, weightNow } = a;
  const available =
    !input.routeBlocked &&
    target.variants.filter((v) => !isShadow(v)).every((v) => input.workload(v, a.replicas.get(v.instance)!).available);
  if (!available && weightNow > 0)
    return failMove(
      a,
      'RolledBack',
      'CanaryUnavailable',
      `config version ${target.version} lost ready replicas while it took ${weightNow}% of the traffic`,
    );
  const bad = weightNow > 0 ? failing(spec.analysis?.checks ?? [], input.analysis ?? []) : undefined;
  if (bad) {
    const failed = failMove(a, 'RolledBack', 'AnalysisFailed', `check ${bad.why}`);
    // The checks' records stay in the status: which one failed, with its value, as the condition says.
    return { ...failed, rollout: { ...failed.rollout, analysis: input.analysis } };
  }
  if (!available) {
    // A route that cannot be written runs no deadline down.
    const elapsedMs = input.now.getTime() - Date.parse(a.pendingSince);
    const deadlineMs = a.deadlineSeconds * 1000;
    const expired = !input.routeBlocked && elapsedMs >= deadlineMs;
    const waiting: RolloutStatus = { ...base, phase: 'Progressing', step: 0, weight: 0 };
    return expired
      ? {
          expired,
          rollout: { ...waiting, phase: 'Failed', message: `did not become Available within ${a.deadlineSeconds}s` },
        }
      : { rollout: waiting, ...(input.routeBlocked ? {} : { requeueMs: deadlineMs - elapsedMs + 1000 }) };
  }
  if (spec.smokeTest && weightNow === 0 && !a.recorded?.smokeTest?.startsWith('Passed')) {
    const result = input.smokeTest;
    if (result && !result.passed) {
      const message = `the smoke test of config version ${target.version} failed: ${result.message}`;
      const failed = failMove(a, 'Failed', 'SmokeTestFailed', message);
      return { ...failed, rollout: { ...failed.rollout, smokeTest: `Failed: ${result.message}` } };
    }
    if (result?.passed)
      return {
        rollout: { ...base, phase: 'Progressing', step: 0, weight: 0, smokeTest: `Passed: ${result.message}` },
        requeueMs: 0,
      };
    return {
      rollout: { ...base, phase: 'Progressing', step: 0, weight: 0, message: 'waiting for the smoke test' },
      requeueMs: 1000,
    };
  }
  return undefined;
}
