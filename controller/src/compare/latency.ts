// Latency quantiles in fixed memory: a histogram of logarithmic buckets, each 4% wider than the one
// below, from 0.01 ms (the resolution) to 10 minutes. A quantile is the upper bound of the bucket that
// holds it, clamped to the smallest and largest latency seen: at most 4% above the exact value.

const smallestMs = 0.01;
const growth = 1.04;
const logGrowth = Math.log(growth);
/** Buckets up to 10 minutes; a longer latency counts in the last. */
export const latencyBuckets = Math.ceil(Math.log(600_000 / smallestMs) / logGrowth) + 1;

function bucketOf(ms: number): number {
  if (!(ms > smallestMs)) return 0;
  return Math.min(latencyBuckets - 1, Math.ceil(Math.log(ms / smallestMs) / logGrowth));
}

const upperBound = (bucket: number) => smallestMs * growth ** bucket;

/** A histogram as data (its non-empty buckets), to be summed with others elsewhere. */
export interface LatencyData {
  /** [bucket, count] of each bucket that holds a latency. */
  buckets: [number, number][];
  min?: number;
  max?: number;
}

export class LatencyHistogram {
  private counts = new Uint32Array(latencyBuckets);
  count = 0;
  private min = Infinity;
  private max = -Infinity;

  record(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.counts[bucketOf(ms)]++;
    this.count++;
    this.min = Math.min(this.min, ms);
    this.max = Math.max(this.max, ms);
  }

  add(other: LatencyHistogram): void {
    for (let i = 0; i < latencyBuckets; i++) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
  }

  data(): LatencyData {
    const buckets: [number, number][] = [];
    for (let i = 0; i < latencyBuckets; i++) if (this.counts[i]) buckets.push([i, this.counts[i]]);
    return this.count ? { buckets, min: this.min, max: this.max } : { buckets };
  }

  /** A histogram from data(); buckets out of range or counts that are not whole numbers are ignored. */
  static from(d: LatencyData): LatencyHistogram {
    const h = new LatencyHistogram();
    for (const entry of Array.isArray(d?.buckets) ? d.buckets : []) {
      if (!Array.isArray(entry)) continue;
      const [bucket, count] = entry as unknown[];
      if (typeof bucket !== 'number' || !Number.isInteger(bucket) || bucket < 0 || bucket >= latencyBuckets) continue;
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count <= 0) continue;
      h.counts[bucket] += count;
      h.count += count;
    }
    if (h.count) {
      h.min = Number.isFinite(d.min) ? d.min! : 0;
      h.max = Number.isFinite(d.max) ? d.max! : upperBound(latencyBuckets - 1);
    }
    return h;
  }

  /** The q-quantile (nearest rank), or undefined with no latency recorded. */
  quantile(q: number): number | undefined {
    if (this.count === 0) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < latencyBuckets; i++) {
      seen += this.counts[i];
      // The last bucket also holds every longer latency: its bound is no bound.
      if (seen >= rank)
        return i === latencyBuckets - 1 ? this.max : Math.min(this.max, Math.max(this.min, upperBound(i)));
    }
    return this.max;
  }
}
