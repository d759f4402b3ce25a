import { describe, expect, it } from 'vitest';
import { compareAnswers, comparer } from '../compare/compare.ts';
import { ComparisonStatistics } from '../compare/statistics.ts';
import { comparisonsOf, shadowReports, testFiguresOf, type AgentShadowReport } from './shadows.ts';

const labels = comparer({ path: '$.p' });
if (!labels.ok) throw new Error(labels.error);
const answer = (p: unknown, latencyMs: number, status = 200) => ({ status, body: JSON.stringify({ p }), latencyMs });

/** A pod's report after `n` pairs, of which those with i % every === 0 disagree and i % 50 === 7 fail on the shadow. */
function report(name: string, n: number, every: number, at: number): AgentShadowReport {
  const s = new ComparisonStatistics();
  for (let i = 0; i < n; i++) {
    const shadow = i % 50 === 7 ? answer(null, 30, 503) : answer(i % every === 0 ? 'b' : 'a', 20 + (i % 10));
    s.record(compareAnswers(labels.ok ? labels.comparer : (undefined as never), answer('a', 5 + (i % 5)), shadow), at);
  }
  return {
    name,
    url: `http://svc-${name}.ns.svc:80`,
    dropped: 1,
    skipped: 2,
    windowSeconds: 300,
    data: JSON.parse(JSON.stringify(s.data(at))) as AgentShadowReport['data'],
  };
}

describe("the endpoint's comparison from its pods' agents", () => {
  it('sums the pods: requests, agreement over every prediction, error rates, and the drops', () => {
    const now = Date.parse('2026-12-06T10:00:00Z');
    const answers = [
      { shadows: [report('b', 100, 4, now), report('c', 10, 1, now)] },
      { shadows: [report('b', 300, 4, now)] },
      {},
      // A pod that still reads an earlier config, where the shadow b had another Service.
      { shadows: [{ ...report('b', 50, 1, now), url: 'http://svc-b-old.ns.svc:80' }] },
    ];
    const out = comparisonsOf(answers, [
      { name: 'b', service: 'svc-b' },
      { name: 'c', service: 'svc-c' },
      { name: 'd', service: 'svc-d' },
    ]);
    // Pod 1: 100 pairs, 2 shadow errors (7, 57), 25 multiples of 4 disagree: 98 compared, 73 agree.
    // Pod 2: 300 pairs, 6 errors; of 294 compared, multiples of 4 (none is 7 mod 50): 75 disagree.
    expect(out.get('svc-b')).toMatchObject({
      requests: 400,
      compared: 392,
      predictions: 392,
      agreement: Math.round(((98 - 25 + (294 - 75)) / 392) * 1e6) / 1e6,
      serving: { errorRate: 0 },
      shadow: { errorRate: 0.02 },
      dropped: 6,
      pods: 2,
      window: { seconds: 300, requests: 400, compared: 392 },
    });
    expect(out.get('svc-b')!.shadow!.latencyP99Ms).toBeGreaterThanOrEqual(29);
    expect(out.get('svc-c')).toMatchObject({ requests: 10, agreement: 0, pods: 1 });
    expect(out.has('svc-d')).toBe(false);
  });

  it("leaves out what is not an agent's report", () => {
    const good = report('b', 3, 2, 0);
    expect(shadowReports({ shadows: [good, { name: 'x' }, null, 3, { ...good, dropped: -1 }] })).toEqual([good]);
    expect(shadowReports({ capture: {} })).toEqual([]);
    expect(shadowReports(null)).toEqual([]);
  });

  it("gives a shadow test the pods' exact figures since the start, of that shadow's Service only", () => {
    const now = Date.parse('2026-12-06T10:00:00Z');
    const answers = [
      { shadows: [report('b', 100, 4, now)] },
      { shadows: [report('b', 300, 4, now), { ...report('b', 50, 1, now), url: 'http://svc-b-old.ns.svc:80' }] },
    ];
    const figures = testFiguresOf(answers, [
      { name: 'b', service: 'svc-b' },
      { name: 'd', service: 'svc-d' },
    ]);
    expect([...figures.keys()]).toEqual(['svc-b']);
    // The counts the verdict needs, unrounded: 392 compared, 292 agreeing, 8 shadow errors of 400.
    expect(figures.get('svc-b')).toMatchObject({
      requests: 400,
      compared: 392,
      predictions: 392,
      agreeing: 292,
      shadow: { errors: 8 },
      serving: { errors: 0 },
    });
  });
});
