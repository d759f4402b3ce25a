import { describe, expect, it } from 'vitest';
import { compareAnswers, comparer } from '../compare/compare.ts';
import { ComparisonStatistics } from '../compare/statistics.ts';
import { agreementMeasurement } from './agreement.ts';
import type { AgentShadowReport } from './shadows.ts';

const labels = comparer({ path: '$.p' });
if (!labels.ok) throw new Error(labels.error);
const c = labels.comparer;
const answer = (p: unknown, status = 200) => ({ status, body: JSON.stringify({ p }), latencyMs: 5 });
const at = Date.parse('2026-12-06T10:00:00Z');

/** A new pod's report of its comparison with the serving version: `n` pairs, `disagreeing` of them not equal, `servingErrors` more failed. */
function report(name: string, n: number, disagreeing: number, servingErrors = 0): AgentShadowReport {
  const s = new ComparisonStatistics();
  for (let i = 0; i < n; i++)
    s.record(compareAnswers(c, answer('setosa'), answer(i < disagreeing ? 'x' : 'setosa')), at);
  for (let i = 0; i < servingErrors; i++) s.record(compareAnswers(c, answer(null, 503), answer('setosa')), at);
  return {
    name,
    url: `http://iris-1.ns.svc:80`,
    dropped: 0,
    skipped: 0,
    windowSeconds: 300,
    data: JSON.parse(JSON.stringify(s.data(at))) as AgentShadowReport['data'],
  };
}

describe("the agreement check's measure", () => {
  it("is the share of the new pods' predictions equal to the serving version's, summed over the pods and the serving variants", () => {
    const m = agreementMeasurement(
      'agree',
      [
        { pod: 'a', shadows: [report('rollout:agree:iris-1', 100, 10), report('rollout:other:iris-1', 100, 100)] },
        { pod: 'b', shadows: [report('rollout:agree:iris-1', 50, 5), report('rollout:agree:small-1', 50, 45)] },
        // A shadow variant's comparison is not the rollout's.
        { pod: 'c', shadows: [report('shadow-b', 100, 100)] },
      ],
      ['iris-2'],
    );
    expect(m).toEqual({ value: (90 + 45 + 5) / 200 });
  });

  it('is nothing yet (the step holds) while nothing was compared, and says why', () => {
    expect(agreementMeasurement('agree', [], [])).toEqual({
      empty: 'the new version has no model instance of its own: there is nothing to compare',
    });
    expect(agreementMeasurement('agree', [], ['iris-2'])).toEqual({ empty: 'no ready pod of the new version yet' });
    expect(
      agreementMeasurement('agree', [{ pod: 'a', unreachable: 'pod a: connect ECONNREFUSED' }], ['iris-2']),
    ).toEqual({ empty: 'no model agent of the new version answered: pod a: connect ECONNREFUSED' });
    expect(
      agreementMeasurement('agree', [{ pod: 'a', shadows: [report('rollout:agree:iris-1', 0, 0, 4)] }], ['iris-2']),
    ).toEqual({
      empty:
        "no prediction of the new version compared with the serving version's yet (1 pod(s), 4 request(s) mirrored, 4 serving and 0 new-version error(s))",
    });
  });
});
