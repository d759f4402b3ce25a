import { describe, expect, it } from 'vitest';
import type { PairOutcome } from './compare.ts';
import { ComparisonStatistics, figuresOf } from './statistics.ts';

const pair = (over: Partial<PairOutcome> = {}): PairOutcome => ({
  servingError: false,
  shadowError: false,
  servingLatencyMs: 10,
  shadowLatencyMs: 20,
  compared: true,
  predictions: 1,
  agreeing: 1,
  absDiffSum: 0,
  absDiffCount: 0,
  ...over,
});

describe('ComparisonStatistics', () => {
  it('reports nothing measured before the first pair', () => {
    const s = new ComparisonStatistics();
    expect(s.sinceStart()).toMatchObject({
      requests: 0,
      compared: 0,
      agreement: undefined,
      meanAbsoluteDifference: undefined,
    });
    expect(s.sinceStart().serving).toEqual({
      errors: 0,
      errorRate: undefined,
      latencyP50Ms: undefined,
      latencyP99Ms: undefined,
    });
  });

  it('aggregates agreement over predictions (a batch weighs as its rows), errors over requests, and both latencies', () => {
    const s = new ComparisonStatistics();
    s.record(pair({ predictions: 150, agreeing: 146 }), 1000);
    s.record(pair({ shadowError: true, compared: false, predictions: 0, agreeing: 0, shadowLatencyMs: 2000 }), 1001);
    s.record(pair({ servingError: true, compared: false, predictions: 0, agreeing: 0 }), 1002);
    s.record(pair({ predictions: 2, agreeing: 0, unreadable: { side: 'shadow', reason: 'not JSON' } }), 1003);
    s.record(
      pair({ compared: false, predictions: 0, agreeing: 0, unreadable: { side: 'serving', reason: 'not JSON' } }),
      1004,
    );
    const f = s.sinceStart();
    expect(f).toMatchObject({
      requests: 5,
      compared: 2,
      predictions: 152,
      agreeing: 146,
      agreement: 146 / 152,
      shadowUnreadable: 1,
      servingUnreadable: 1,
    });
    expect(f.serving).toMatchObject({ errors: 1, errorRate: 0.2, latencyP50Ms: 10, latencyP99Ms: 10 });
    expect(f.shadow).toMatchObject({ errors: 1, errorRate: 0.2, latencyP99Ms: 2000 });
    // A quantile is its histogram bucket's upper bound: at most 4% above.
    expect(f.shadow.latencyP50Ms).toBeGreaterThanOrEqual(20);
    expect(f.shadow.latencyP50Ms).toBeLessThanOrEqual(20.8);
  });

  it('gives the mean absolute difference of numbers over the values compared', () => {
    const s = new ComparisonStatistics();
    s.record(pair({ absDiffSum: 0.3, absDiffCount: 3 }), 0);
    s.record(pair({ absDiffSum: 0.1, absDiffCount: 1 }), 0);
    expect(s.sinceStart().meanAbsoluteDifference).toBeCloseTo(0.1, 12);
  });

  it('slides: the window holds the last buckets only, since-start holds everything', () => {
    const s = new ComparisonStatistics({ bucketMs: 1000, buckets: 3 });
    expect(s.windowMs).toBe(3000);
    s.record(pair({ agreeing: 0 }), 0); // bucket 0
    s.record(pair(), 1500); // bucket 1
    s.record(pair(), 2999); // bucket 2
    expect(s.window(2999)).toMatchObject({ requests: 3, agreeing: 2 });
    // At 3000 the window is buckets 1..3: the disagreement of bucket 0 has left it.
    expect(s.window(3000)).toMatchObject({ requests: 2, agreeing: 2, agreement: 1 });
    s.record(pair({ agreeing: 0 }), 3100); // bucket 3 reuses bucket 0's place
    expect(s.window(3100)).toMatchObject({ requests: 3, agreeing: 2 });
    expect(s.window(10_000)).toMatchObject({ requests: 0, agreement: undefined });
    expect(s.sinceStart()).toMatchObject({ requests: 4, agreeing: 2, agreement: 0.5 });
  });

  it('counts a late pair (older than its bucket place holds) since the start only', () => {
    const s = new ComparisonStatistics({ bucketMs: 1000, buckets: 2 });
    s.record(pair(), 5000); // bucket 5, place 1
    s.record(pair({ agreeing: 0 }), 3000); // bucket 3, place 1: out of the window
    expect(s.window(5000)).toMatchObject({ requests: 1, agreeing: 1 });
    expect(s.sinceStart()).toMatchObject({ requests: 2, agreeing: 1 });
  });

  it('keeps bounded memory: a day of pairs leaves the window with the last buckets only', () => {
    const s = new ComparisonStatistics({ bucketMs: 10_000, buckets: 30 });
    for (let t = 0; t < 86_400_000; t += 1000) s.record(pair({ agreeing: t < 86_100_000 ? 0 : 1 }), t);
    expect(s.sinceStart().requests).toBe(86_400);
    expect(s.window(86_399_000)).toMatchObject({ requests: 300, agreeing: 300 });
  });

  it('refuses a window of no bucket', () => {
    expect(() => new ComparisonStatistics({ buckets: 0 })).toThrow(/buckets >= 1/);
  });

  it('sums the data of several pods into exactly the figures of one that saw every pair, quantiles included', () => {
    const pods = [new ComparisonStatistics(), new ComparisonStatistics(), new ComparisonStatistics()];
    const all = new ComparisonStatistics();
    for (let i = 0; i < 3000; i++) {
      const o = pair({
        servingLatencyMs: 1 + ((i * 7919) % 500) / 10,
        shadowLatencyMs: 2 + ((i * 104729) % 900) / 7,
        shadowError: i % 97 === 0,
        compared: i % 97 !== 0,
        predictions: i % 97 === 0 ? 0 : 1 + (i % 3),
        agreeing: i % 97 === 0 || i % 11 === 0 ? 0 : 1 + (i % 3),
        absDiffSum: (i % 5) / 4,
        absDiffCount: 1,
      });
      pods[i % 3].record(o, 1000 + i * 100);
      all.record(o, 1000 + i * 100);
    }
    const now = 1000 + 3000 * 100;
    // Through JSON, as the controller reads them from each pod's agent.
    const data = pods.map((p) => JSON.parse(JSON.stringify(p.data(now))) as ReturnType<ComparisonStatistics['data']>);
    expect(figuresOf(data.map((d) => d.sinceStart))).toEqual(all.sinceStart());
    expect(figuresOf(data.map((d) => d.window))).toEqual(all.window(now));
    expect(all.window(now).requests).toBeLessThan(all.sinceStart().requests);
  });

  it('reads data that is damaged or empty as nothing rather than failing', () => {
    expect(figuresOf([])).toEqual(new ComparisonStatistics().sinceStart());
    const damaged = {
      ...new ComparisonStatistics().data(0).sinceStart,
      requests: -3,
      servingLatency: { buckets: [[1e9, 4] as [number, number], [3, 1.5] as [number, number]] },
    };
    expect(figuresOf([damaged])).toMatchObject({ requests: 0, serving: { latencyP99Ms: undefined } });
  });
});
