import { describe, expect, it } from 'vitest';
import { latencyBoundsMs, RequestWindow } from '../agent/window.ts';
import { bucketQuantile, requestMeasurement } from './agent-requests.ts';

describe('the quantile of bucketed latencies', () => {
  it('interpolates inside the bucket the rank falls in, as histogram_quantile does', () => {
    // 100 in (0, 10], 100 in (10, 20]: the p99 is 98% of the way through the second bucket.
    expect(bucketQuantile(0.99, [10, 20], [100, 100, 0])).toBeCloseTo(19.8, 6);
    expect(bucketQuantile(0.5, [10, 20], [100, 100, 0])).toBeCloseTo(10, 6);
    // Past the last bound: the last bound; and nothing counted, nothing to say.
    expect(bucketQuantile(0.99, [10, 20], [0, 0, 5])).toBe(20);
    expect(bucketQuantile(0.99, [10, 20], [0, 0, 0])).toBeUndefined();
  });

  it('is within a bucket (25%) of the true p99 of what the agents saw', () => {
    const w = new RequestWindow(() => 0);
    // A known spread: 1..1000 ms, one request each; the true p99 is 990 ms.
    for (let ms = 1; ms <= 1000; ms++) w.record('2xx', ms);
    const m = requestMeasurement('latencyP99', 30, [{ pod: 'a', requests: w.read(30) }]);
    expect('value' in m && m.value).toBeGreaterThan(990 / 1.25);
    expect('value' in m && m.value).toBeLessThan(990 * 1.25);
    expect(latencyBoundsMs.length).toBeGreaterThan(40);
  });
});

describe('the error rate the agents counted', () => {
  it('counts 5xx and answers cut short as errors, over every pod', () => {
    const a = new RequestWindow(() => 0);
    const b = new RequestWindow(() => 0);
    for (let i = 0; i < 95; i++) a.record('2xx', 1);
    for (let i = 0; i < 3; i++) b.record('5xx', 1);
    b.record('aborted', 1);
    b.record('4xx', 1);
    expect(
      requestMeasurement('errorRate', 30, [
        { pod: 'a', requests: a.read(30) },
        { pod: 'b', requests: b.read(30) },
      ]),
    ).toEqual({ value: 4 / 100 });
  });

  it('refuses to sum buckets of different agents', () => {
    const a = new RequestWindow(() => 0).read(30);
    a.requests['2xx'] = 1;
    const b = { ...a, latency: { boundsMs: [1, 2], counts: [1, 0, 0] } };
    expect(
      requestMeasurement('latencyP99', 30, [
        { pod: 'a', requests: a },
        { pod: 'b', requests: b },
      ]),
    ).toMatchObject({
      error: expect.stringContaining('different buckets'),
    });
  });
});
