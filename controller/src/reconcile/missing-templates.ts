// Whether a config or model that an endpoint names, and that does not exist, is a problem yet.
// `kubectl apply -f dir/` (or a GitOps sync) writes an endpoint and its templates in file order,
// the endpoint often first: a reference that appears within a short grace period is waited for
// quietly (reason WaitingForTemplates, no Warning), and becomes ConfigNotFound or ModelNotFound,
// with its Warning, only if it stays missing. A template that the serving version was made from and
// that disappears is a problem at once. Pure: the grace counts from the lastTransitionTime of the
// TemplatesAvailable condition in status, so a restarted controller needs no memory of it.
import type { Condition } from '../api/generated.ts';
import type { VersionPlan } from '../desired/plan.ts';
import { iso, type ConditionInput } from '../desired/status.ts';

/** How long a newly named config or model may be missing before the endpoint warns about it. */
export const templateGraceMs = 30_000;

export const waitingReason = 'WaitingForTemplates';

/** Reasons of a TemplatesAvailable condition that say a named template does not exist. */
const missingReasons = new Set([waitingReason, 'ConfigNotFound', 'ModelNotFound']);

/** What an endpoint resolves to: the version its templates give, or why there is none (and when to look again). */
export interface Resolved {
  target?: VersionPlan;
  problem?: ConditionInput;
  /** When the grace period of a missing template ends: the endpoint is looked at again then. */
  recheckMs?: number;
}

export interface MissingTemplates {
  /** The ConfigNotFound or ModelNotFound condition, as it reads once the grace period is over. */
  problem: ConditionInput;
  /** The kind and names of what is missing, for the message: "MachineLearningModel ns/a named by config c". */
  what: string;
  /** Names of the templates missing (a config's, or models'). */
  names: string[];
  /**
   * The templates (config and models) the serving version was made from; undefined when nothing
   * serves, null when something serves but its snapshots cannot be read.
   */
  servedFrom: string[] | null | undefined;
  /** The endpoint's TemplatesAvailable condition, as its status has it. */
  previous: Condition | undefined;
  now: Date;
}

export function missingTemplates(m: MissingTemplates): Resolved {
  const disappeared =
    m.servedFrom === null || (m.servedFrom !== undefined && m.names.some((n) => m.servedFrom!.includes(n)));
  if (disappeared) return { problem: m.problem };
  const missingBefore = m.previous?.status === 'False' && missingReasons.has(m.previous.reason);
  const since = missingBefore ? Date.parse(m.previous!.lastTransitionTime) : m.now.getTime();
  const left = since + templateGraceMs - m.now.getTime();
  if (!(left > 0)) return { problem: m.problem };
  return {
    problem: {
      type: m.problem.type,
      status: 'False',
      reason: waitingReason,
      message: `waiting for ${m.what}, which does not exist yet (objects applied together arrive in any order); if it still does not exist at ${iso(new Date(since + templateGraceMs))}, this becomes ${m.problem.reason}: ${m.problem.message}`,
    },
    recheckMs: left,
  };
}
