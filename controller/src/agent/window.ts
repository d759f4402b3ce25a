// The requests clients sent through the agent over the last seconds, by status class and latency:
// what the built-in errorRate and latencyP99 checks read when their source is Agents (probes/
// agent-requests.ts). One slot per second over the longest check interval, each a row of counts, so
// that any window up to it is an exact sum and the memory is fixed (about 0.9 MiB).

/** The status classes counted; `aborted`: the answer was cut short (the client left, or the model did). */
export const statusClasses = ['1xx', '2xx', '3xx', '4xx', '5xx', 'aborted'] as const;
export type StatusClass = (typeof statusClasses)[number];

/**
 * Upper bounds of the latency buckets, in milliseconds: 0.5 ms, then 25% wider each, up to 107 s; a
 * last bucket holds the rest. A quantile read from them is within 25% of the true one.
 */
export const latencyBoundsMs: readonly number[] = (() => {
  const bounds: number[] = [];
  for (let b = 0.5; b <= 120_000; b *= 1.25) bounds.push(Number(b.toPrecision(4)));
  return bounds;
})();

/** The longest window, in seconds: the longest interval of a check. */
export const maxWindowSeconds = 3600;

/** What a window holds: requests by status class, and their latencies in buckets (the last one unbounded). */
export interface WindowTally {
  windowSeconds: number;
  requests: Record<StatusClass, number>;
  latency: { boundsMs: number[]; counts: number[] };
}

const slotOf = (second: number) => ((second % maxWindowSeconds) + maxWindowSeconds) % maxWindowSeconds;

const classIndex = (c: string): number => {
  const i = statusClasses.indexOf(c as StatusClass);
  return i < 0 ? statusClasses.indexOf('aborted') : i;
};

function bucketOf(ms: number): number {
  // Binary search: the first bound at or above ms; past the last, the unbounded bucket.
  let lo = 0;
  let hi = latencyBoundsMs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (latencyBoundsMs[mid] >= ms) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

export class RequestWindow {
  private readonly width = statusClasses.length + latencyBoundsMs.length + 1;
  private readonly counts = new Uint32Array(maxWindowSeconds * this.width);
  /** The second each slot holds (-1: never used), so that a slot left from an earlier lap is not read. */
  private readonly seconds = new Float64Array(maxWindowSeconds).fill(-1);

  private readonly clock: () => number;

  constructor(clock: () => number = Date.now) {
    this.clock = clock;
  }

  private slot(second: number): number {
    const i = slotOf(second);
    if (this.seconds[i] !== second) {
      this.counts.fill(0, i * this.width, (i + 1) * this.width);
      this.seconds[i] = second;
    }
    return i * this.width;
  }

  /** One request answered (or cut short), with its duration. */
  record(statusClass: string, ms: number): void {
    const base = this.slot(Math.floor(this.clock() / 1000));
    this.counts[base + classIndex(statusClass)]++;
    this.counts[base + statusClasses.length + bucketOf(ms)]++;
  }

  /** The sums over the last `windowSeconds` (the current second included), clamped to 1..maxWindowSeconds. */
  read(windowSeconds: number): WindowTally {
    const span = Math.min(maxWindowSeconds, Math.max(1, Math.floor(windowSeconds) || 1));
    const now = Math.floor(this.clock() / 1000);
    const sums = new Array<number>(this.width).fill(0);
    for (let second = now - span + 1; second <= now; second++) {
      const i = slotOf(second);
      if (this.seconds[i] !== second) continue;
      const base = i * this.width;
      for (let k = 0; k < this.width; k++) sums[k] += this.counts[base + k];
    }
    const requests = Object.fromEntries(statusClasses.map((c, k) => [c, sums[k]])) as Record<StatusClass, number>;
    return {
      windowSeconds: span,
      requests,
      latency: { boundsMs: [...latencyBoundsMs], counts: sums.slice(statusClasses.length) },
    };
  }
}
