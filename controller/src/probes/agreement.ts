// The `agreement` check's probe: under it, each new model instance's agents send the serving
// version a copy of every request they answer and compare the two answers (desired/agent.ts,
// rolloutComparisons). The measure is the share of the new version's predictions that equal the
// serving version's, summed exactly over the new pods' tallies of this rollout attempt.
import type { AnalysisCheck } from '../api/generated.ts';
import { figuresOf } from '../compare/statistics.ts';
import { comparedInstances, rolloutComparisonPrefix } from '../desired/agent.ts';
import { isShadow, type VersionPlan } from '../desired/plan.ts';
import type { Measurement } from '../rollout/analysis.ts';
import type { AgentAnswer } from './data-capture.ts';

/** Compared requests an agreement needs before it is a value, unless the check says otherwise. */
export const defaultMinCompared = 20;

/** What the check compares in this rollout: nothing to ask (and why), or the new instances whose agents to ask. */
export function agreementSubjects(
  target: VersionPlan,
  serving: VersionPlan,
): { measured: Measurement } | { instances: string[] } {
  // An instance the serving version runs as a shadow (a promotion's) answers no client there: it is new.
  const fresh = target.variants.filter(
    (v) => !isShadow(v) && !serving.variants.some((s) => !isShadow(s) && s.instance === v.instance),
  );
  // Every request is answered by an instance that serves in the serving version too: the same answers.
  if (!fresh.length) return { measured: { value: 1 } };
  const compared = comparedInstances(target, serving);
  if (!compared.length)
    return {
      measured: {
        empty: `the new version's model instances (${fresh.map((v) => v.instance).join(', ')}) have no model agent, made before the agreement check was added: nothing compares them; remove the check to roll this version out`,
      },
    };
  return { instances: compared.map((v) => v.instance) };
}

/** The check's measure from the new version's agents' answers (this attempt's tallies); nothing yet below its minimum. */
export function agreementMeasurement(
  check: Pick<AnalysisCheck, 'name' | 'minCompared'>,
  plan: string,
  answers: readonly AgentAnswer[],
): Measurement {
  const prefix = rolloutComparisonPrefix(check.name, plan);
  const reports = answers.flatMap((a) => (a.shadows ?? []).filter((s) => s.name.startsWith(prefix)));
  const answered = answers.filter((a) => !a.unreachable).length;
  if (!answered) {
    const why = answers.find((a) => a.unreachable)?.unreachable;
    return {
      empty: why ? `no model agent of the new version answered: ${why}` : 'no ready pod of the new version yet',
    };
  }
  const f = figuresOf(reports.map((r) => r.data.sinceStart));
  const least = check.minCompared ?? defaultMinCompared;
  if (f.agreement === undefined || f.compared < least)
    return {
      empty: `${f.compared} request(s) of the new version compared with the serving version, at least ${least} needed (${answered} pod(s), ${f.requests} mirrored, ${f.serving.errors} serving and ${f.shadow.errors} new-version error(s))`,
    };
  return { value: f.agreement };
}
