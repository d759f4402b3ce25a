// Conditions in the shape of metav1.Condition, with transition times that only move when the
// status really changes (so recomputing an unchanged status yields an identical object).
import type { Condition } from '../api/generated.ts';

export type ConditionInput = Pick<Condition, 'type' | 'status' | 'reason' | 'message'>;

export function setConditions(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  generation: number | undefined,
  now: Date,
): Condition[] {
  return next.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : iso(now);
    return { ...c, lastTransitionTime, ...(generation !== undefined ? { observedGeneration: generation } : {}) };
  });
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** A time as Kubernetes writes it (RFC 3339, whole seconds). */
export const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
