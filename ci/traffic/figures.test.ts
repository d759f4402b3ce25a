import { describe, expect, it } from 'vitest';
import { coverageProblems, rollbackProblems } from './figures.ts';
import { binomialInterval, servedProblems, type Sample } from './load.ts';

/** Requests at `rate` a second from `from` to `to` ms, answered by `instance` (or failed with a 500 when `fail(i)`). */
function samples(
  from: number,
  to: number,
  rate: number,
  instance: (t: number, i: number) => string,
  fail: (t: number, i: number) => boolean = () => false,
): Sample[] {
  const out: Sample[] = [];
  for (let i = 0, t = from; t < to; i++, t = from + (i * 1000) / rate) {
    const bad = fail(t, i);
    out.push({
      i,
      start: t,
      end: t + 3,
      expectedMs: 0,
      status: bad ? 500 : 200,
      backend: { pod: `${instance(t, i)}-x`, instance: instance(t, i) },
    });
  }
  return out;
}

describe('a broken candidate rolled back (20% share, 50% errors, 60 requests/s)', () => {
  const share = 0.2;
  const errorRate = 0.5;
  // Every 10th request goes to the candidate (20% would be every 5th: half of them fail).
  const healthy = samples(
    0,
    30_000,
    60,
    (t, i) => (i % 5 === 0 && t >= 5000 && t < 10_000 ? 'v2' : 'v1'),
    (t, i) => i % 10 === 0 && t >= 5000 && t < 10_000,
  );

  it("passes a rollback 5 s after the first error with the share's failures", () => {
    const { problems, figures } = rollbackProblems(healthy, { rollbackAt: 10_000, share, errorRate });
    expect(problems).toEqual([]);
    expect(figures).toMatchObject({ firstError: 5000, failed: 30, sent: 301 });
  });

  it('catches a rollback 20 s after the first error, which the old test (bake 120 s, no bound on the time) let pass', () => {
    const late = samples(
      0,
      40_000,
      60,
      (t, i) => (i % 5 === 0 && t >= 5000 && t < 25_000 ? 'v2' : 'v1'),
      (t, i) => i % 10 === 0 && t >= 5000 && t < 25_000,
    );
    expect(rollbackProblems(late, { rollbackAt: 25_000, share, errorRate }).problems).toEqual([
      'rolled back 20.0 s after the first failed request, more than 15.0 s',
    ]);
  });

  it('catches a candidate given all the traffic for 1 s before its rollback, which a window running 3 s past the rollback diluted below the bound', () => {
    // 5-9 s: its 20% share; 9-10 s: all traffic to it, half failing.
    const broken = samples(
      0,
      30_000,
      60,
      (t, i) => ((t >= 9000 && t < 10_000) || (i % 5 === 0 && t >= 5000 && t < 9000) ? 'v2' : 'v1'),
      (t, i) => (t >= 9000 && t < 10_000 ? i % 2 === 0 : i % 10 === 0 && t >= 5000 && t < 9000),
    );
    const failedOf = (from: number, to: number) =>
      broken.filter((s) => s.status !== 200 && s.start >= from && s.start <= to).length;
    // The old check: the failures over every request from the first error until 3 s after the rollback.
    const during = broken.filter((s) => s.start >= 5000 && s.start <= 13_000);
    const [, hi] = binomialInterval(share * errorRate, during.length);
    expect(failedOf(5000, 13_000) / during.length, 'the old window passes it').toBeLessThanOrEqual(hi);
    expect(rollbackProblems(broken, { rollbackAt: 10_000, share, errorRate }).problems).toEqual([
      expect.stringMatching(
        /^54 of 301 requests failed from the first error to the rollback, more than the \d+ a 20% share/,
      ),
    ]);
  });
});

describe('the load over each switch of a run', () => {
  const spans = [
    { name: 'switch 1 (v1 -> v2)', from: 10_000, to: 20_000, backends: ['v1', 'v2'] },
    { name: 'switch 2 (v2 -> v3)', from: 30_000, to: 40_000, backends: ['v2', 'v3'] },
  ];
  const versionAt = (t: number) => (t < 15_000 ? 'v1' : t < 35_000 ? 'v2' : 'v3');

  it('passes a run that sends through every switch, answered by the old or the new version', () => {
    expect(coverageProblems(samples(0, 50_000, 40, versionAt), spans, 40)).toEqual([]);
  });

  it('catches a load that ended before the last switch, which "every request served" let pass', () => {
    const short = samples(0, 25_000, 40, versionAt);
    expect(servedProblems(short, { backends: ['v1', 'v2', 'v3'], maxExtraMs: 1000 })).toEqual([]);
    expect(coverageProblems(short, spans, 40)).toEqual([
      'switch 2 (v2 -> v3): 0 requests sent in its 10.0 s, fewer than 360 (90% of 40/s)',
    ]);
  });

  it('catches a switch answered for a moment by a version from before it, which any backend of the endpoint passed', () => {
    const stale = samples(0, 50_000, 40, (t) => (t >= 36_000 && t < 36_500 ? 'v1' : versionAt(t)));
    expect(servedProblems(stale, { backends: ['v1', 'v2', 'v3'], maxExtraMs: 1000 })).toEqual([]);
    expect(coverageProblems(stale, spans, 40)).toEqual([
      'switch 2 (v2 -> v3): 20 answers from v1, neither the old nor the new version (v2, v3)',
    ]);
  });
});
