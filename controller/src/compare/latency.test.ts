import { describe, expect, it } from 'vitest';
import { LatencyHistogram, latencyBuckets } from './latency.ts';

describe('LatencyHistogram', () => {
  it('has no quantile before a latency is recorded', () => {
    expect(new LatencyHistogram().quantile(0.99)).toBeUndefined();
  });

  it('gives p50 and p99 within 4% above the exact nearest-rank values, over six decades', () => {
    const h = new LatencyHistogram();
    // 1..10000 in steps of 1, and a tail of 0.05 ms values: the exact quantiles are known.
    const values = [...Array.from({ length: 10_000 }, (_, i) => i + 1), ...Array.from({ length: 100 }, () => 0.05)];
    for (const v of values) h.record(v);
    const sorted = [...values].sort((a, b) => a - b);
    for (const q of [0.01, 0.5, 0.9, 0.99, 0.999]) {
      const exact = sorted[Math.ceil(q * sorted.length) - 1];
      const got = h.quantile(q)!;
      expect(got, `q ${q}`).toBeGreaterThanOrEqual(exact);
      expect(got, `q ${q}`).toBeLessThanOrEqual(exact * 1.04);
    }
  });

  it('never reports beyond the smallest and largest latency seen', () => {
    const h = new LatencyHistogram();
    h.record(7.3);
    expect(h.quantile(0.5)).toBe(7.3);
    expect(h.quantile(0.99)).toBe(7.3);
  });

  it('counts zero, sub-resolution and beyond-range latencies, and ignores what is not a latency', () => {
    const h = new LatencyHistogram();
    for (const v of [0, 0.001, 3_600_000, Number.NaN, -1, Infinity]) h.record(v);
    expect(h.count).toBe(3);
    expect(h.quantile(1)).toBe(3_600_000);
    // The first bucket holds everything up to 0.01 ms: its bound is the resolution.
    expect(h.quantile(0.1)).toBe(0.01);
  });

  it('merges: the sum of two halves gives the quantiles of the whole', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const whole = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) {
      (i % 2 ? a : b).record(i / 10);
      whole.record(i / 10);
    }
    a.add(b);
    expect(a.count).toBe(1000);
    expect(a.quantile(0.99)).toBe(whole.quantile(0.99));
    expect(a.quantile(0.5)).toBe(whole.quantile(0.5));
  });

  it('holds a fixed number of buckets (under 500) whatever it records', () => {
    expect(latencyBuckets).toBeLessThan(500);
  });
});
