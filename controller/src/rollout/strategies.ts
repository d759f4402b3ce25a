// Strategies as plans of steps: the new version's share of the traffic at each step, and how long
// the step lasts (its bake, during which the metric gates run). The last step is always all of the
// traffic: promotion. Pure.
import { createHash } from 'node:crypto';
import type { MachineLearningEndpointRollout } from '../api/generated.ts';
import { canonicalJson } from '../desired/names.ts';

export interface Step {
  /** The new version's share of the traffic (percent). */
  weight: number;
  /** How long the step lasts before the next one. */
  seconds: number;
}

export const strategyDefaults = { canaryPercent: 10, bakeSeconds: 300, stepPercent: 20, intervalSeconds: 60 } as const;

export function planOf(rollout: MachineLearningEndpointRollout): Step[] {
  switch (rollout.strategy) {
    case 'Canary':
      return [
        {
          weight: rollout.canary?.percent ?? strategyDefaults.canaryPercent,
          seconds: rollout.canary?.bakeSeconds ?? strategyDefaults.bakeSeconds,
        },
        { weight: 100, seconds: 0 },
      ];
    case 'Linear': {
      const step = rollout.linear?.stepPercent ?? strategyDefaults.stepPercent;
      const seconds = rollout.linear?.intervalSeconds ?? strategyDefaults.intervalSeconds;
      const steps: Step[] = [];
      for (let weight = step; weight < 100; weight += step) steps.push({ weight, seconds });
      return [...steps, { weight: 100, seconds: 0 }];
    }
    default:
      return [{ weight: 100, seconds: 0 }];
  }
}

/**
 * The fingerprint of what a rollout runs by: its steps, checks, smoke test and attempt. A change to
 * any of them starts the rollout afresh (and lets a failed version try again); approving, aborting,
 * the drain and the deadline leave it as it is.
 */
export function planFingerprint(rollout: MachineLearningEndpointRollout): string {
  const fields = {
    steps: planOf(rollout),
    strategy: rollout.strategy ?? 'BlueGreen',
    analysis: rollout.analysis ?? null,
    smokeTest: rollout.smokeTest ?? null,
    approval: rollout.approval ?? null,
    attempt: rollout.attempt ?? 0,
  };
  return createHash('sha256').update(canonicalJson(fields)).digest('hex').slice(0, 16);
}
