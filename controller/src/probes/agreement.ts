// The `agreement` check's probe: under it, each new model instance's agents send the serving
// version a copy of every request they answer and compare the two answers (desired/agent.ts,
// rolloutComparisons). The measure is the share of the new version's predictions that equal the
// serving version's, summed exactly over the new pods' tallies since they started.
import { figuresOf } from '../compare/statistics.ts';
import { rolloutComparisonPrefix } from '../desired/agent.ts';
import type { Measurement } from '../rollout/analysis.ts';
import type { AgentAnswer } from './data-capture.ts';

/** The check's measure from the new version's agents' answers; nothing yet until a prediction was compared. */
export function agreementMeasurement(
  check: string,
  answers: readonly AgentAnswer[],
  newInstances: readonly string[],
): Measurement {
  if (!newInstances.length)
    return { empty: 'the new version has no model instance of its own: there is nothing to compare' };
  const reports = answers.flatMap((a) =>
    (a.shadows ?? []).filter((s) => s.name.startsWith(rolloutComparisonPrefix(check))),
  );
  const answered = answers.filter((a) => !a.unreachable).length;
  if (!answered) {
    const why = answers.find((a) => a.unreachable)?.unreachable;
    return {
      empty: why ? `no model agent of the new version answered: ${why}` : 'no ready pod of the new version yet',
    };
  }
  const f = figuresOf(reports.map((r) => r.data.sinceStart));
  if (f.agreement === undefined)
    return {
      empty: `no prediction of the new version compared with the serving version's yet (${answered} pod(s), ${f.requests} request(s) mirrored, ${f.serving.errors} serving and ${f.shadow.errors} new-version error(s))`,
    };
  return { value: f.agreement };
}
