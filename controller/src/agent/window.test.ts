import { describe, expect, it } from 'vitest';
import { latencyBoundsMs, maxWindowSeconds, RequestWindow } from './window.ts';

function windowAt(start: number) {
  let now = start;
  const w = new RequestWindow(() => now);
  return { w, advance: (ms: number) => (now += ms) };
}

describe('the request window', () => {
  it('counts requests by status class over the last seconds, the current one included', () => {
    const { w, advance } = windowAt(1_000_000);
    w.record('2xx', 3);
    w.record('5xx', 40);
    advance(10_000);
    w.record('2xx', 3);
    w.record('aborted', 7);
    expect(w.read(5).requests).toEqual({ '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 0, aborted: 1 });
    expect(w.read(11).requests).toMatchObject({ '2xx': 2, '5xx': 1, aborted: 1 });
    // An unknown class is counted as cut short rather than lost.
    w.record('9xx', 1);
    expect(w.read(1).requests.aborted).toBe(2);
  });

  it('puts each latency in the first bucket whose bound holds it, the rest in the last', () => {
    const { w } = windowAt(5_000);
    w.record('2xx', 0.5);
    w.record('2xx', 0.51);
    w.record('2xx', 1e9);
    const { counts, boundsMs } = w.read(1).latency;
    expect(counts).toHaveLength(boundsMs.length + 1);
    expect(counts[0]).toBe(1);
    expect(counts[1]).toBe(1);
    expect(counts.at(-1)).toBe(1);
    // Each bucket is 25% wider than the one before it, from 0.5 ms up to two minutes.
    expect(boundsMs[0]).toBe(0.5);
    expect(boundsMs.at(-1)).toBeGreaterThan(100_000);
    for (let i = 1; i < boundsMs.length; i++) expect(boundsMs[i] / boundsMs[i - 1]).toBeCloseTo(1.25, 2);
  });

  it('forgets a second once the window has gone round past it', () => {
    const { w, advance } = windowAt(0);
    w.record('5xx', 1);
    advance(maxWindowSeconds * 1000);
    // The same slot, a lap later: the old count is not read, nor added to.
    expect(w.read(maxWindowSeconds).requests['5xx']).toBe(0);
    w.record('2xx', 1);
    expect(w.read(maxWindowSeconds).requests).toMatchObject({ '2xx': 1, '5xx': 0 });
  });

  it('clamps the window asked for to 1..3600 seconds', () => {
    const { w } = windowAt(0);
    expect(w.read(0).windowSeconds).toBe(1);
    expect(w.read(Number.NaN).windowSeconds).toBe(1);
    expect(w.read(1e9).windowSeconds).toBe(maxWindowSeconds);
    expect(latencyBoundsMs.length).toBeLessThan(64);
  });
});
