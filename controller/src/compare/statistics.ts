// The comparison of one shadow, over a sliding window and since the start, in bounded memory: the
// window is a ring of time buckets (by default 30 of 10 s: the last 5 minutes), each a tally of
// counts and two latency histograms; a bucket older than the window is reused for the present.
import type { PairOutcome } from './compare.ts';
import { LatencyHistogram, type LatencyData } from './latency.ts';

/** The figures of a comparison (status.shadows[].comparison, the metrics, the verdict's input). */
export interface ComparisonFigures {
  /** Mirrored requests whose pair of answers was recorded. */
  requests: number;
  /** Requests whose predictions were compared (both sides 2xx, the serving answer readable). */
  compared: number;
  /** Predictions compared (an array answer counts each element) and those that agreed. */
  predictions: number;
  agreeing: number;
  /** agreeing / predictions; undefined with no prediction compared. */
  agreement?: number;
  /** For numbers: the mean |serving - shadow| over the values compared. */
  meanAbsoluteDifference?: number;
  /** Shadow answers that were 2xx but could not be read (counted as disagreements). */
  shadowUnreadable: number;
  /** Serving answers that were 2xx but could not be read (not compared). */
  servingUnreadable: number;
  serving: SideFigures;
  shadow: SideFigures;
}

export interface SideFigures {
  errors: number;
  /** errors / requests; undefined with no request. */
  errorRate?: number;
  latencyP50Ms?: number;
  latencyP99Ms?: number;
}

/** A tally as data: what one agent reports, so that the figures of several pods are summed exactly. */
export interface TallyData {
  requests: number;
  compared: number;
  predictions: number;
  agreeing: number;
  absDiffSum: number;
  absDiffCount: number;
  shadowUnreadable: number;
  servingUnreadable: number;
  servingErrors: number;
  shadowErrors: number;
  servingLatency: LatencyData;
  shadowLatency: LatencyData;
}

const counts = [
  'requests',
  'compared',
  'predictions',
  'agreeing',
  'absDiffSum',
  'absDiffCount',
  'shadowUnreadable',
  'servingUnreadable',
  'servingErrors',
  'shadowErrors',
] as const;

class Tally {
  requests = 0;
  compared = 0;
  predictions = 0;
  agreeing = 0;
  absDiffSum = 0;
  absDiffCount = 0;
  shadowUnreadable = 0;
  servingUnreadable = 0;
  servingErrors = 0;
  shadowErrors = 0;
  servingLatency = new LatencyHistogram();
  shadowLatency = new LatencyHistogram();

  record(o: PairOutcome): void {
    this.requests++;
    if (o.compared) this.compared++;
    this.predictions += o.predictions;
    this.agreeing += o.agreeing;
    this.absDiffSum += o.absDiffSum;
    this.absDiffCount += o.absDiffCount;
    if (o.unreadable?.side === 'shadow') this.shadowUnreadable++;
    if (o.unreadable?.side === 'serving') this.servingUnreadable++;
    if (o.servingError) this.servingErrors++;
    if (o.shadowError) this.shadowErrors++;
    this.servingLatency.record(o.servingLatencyMs);
    this.shadowLatency.record(o.shadowLatencyMs);
  }

  add(t: Tally): void {
    this.requests += t.requests;
    this.compared += t.compared;
    this.predictions += t.predictions;
    this.agreeing += t.agreeing;
    this.absDiffSum += t.absDiffSum;
    this.absDiffCount += t.absDiffCount;
    this.shadowUnreadable += t.shadowUnreadable;
    this.servingUnreadable += t.servingUnreadable;
    this.servingErrors += t.servingErrors;
    this.shadowErrors += t.shadowErrors;
    this.servingLatency.add(t.servingLatency);
    this.shadowLatency.add(t.shadowLatency);
  }

  data(): TallyData {
    return {
      requests: this.requests,
      compared: this.compared,
      predictions: this.predictions,
      agreeing: this.agreeing,
      absDiffSum: this.absDiffSum,
      absDiffCount: this.absDiffCount,
      shadowUnreadable: this.shadowUnreadable,
      servingUnreadable: this.servingUnreadable,
      servingErrors: this.servingErrors,
      shadowErrors: this.shadowErrors,
      servingLatency: this.servingLatency.data(),
      shadowLatency: this.shadowLatency.data(),
    };
  }

  static from(d: TallyData): Tally {
    const t = new Tally();
    for (const key of counts) {
      const v = d[key];
      // Counts are whole numbers; only the sum of differences is not.
      if (typeof v === 'number' && v >= 0 && (key === 'absDiffSum' ? Number.isFinite(v) : Number.isSafeInteger(v)))
        t[key] = v;
    }
    t.servingLatency = LatencyHistogram.from(d.servingLatency ?? { buckets: [] });
    t.shadowLatency = LatencyHistogram.from(d.shadowLatency ?? { buckets: [] });
    return t;
  }

  figures(): ComparisonFigures {
    const side = (errors: number, latency: LatencyHistogram): SideFigures => ({
      errors,
      errorRate: this.requests > 0 ? errors / this.requests : undefined,
      latencyP50Ms: latency.quantile(0.5),
      latencyP99Ms: latency.quantile(0.99),
    });
    return {
      requests: this.requests,
      compared: this.compared,
      predictions: this.predictions,
      agreeing: this.agreeing,
      agreement: this.predictions > 0 ? this.agreeing / this.predictions : undefined,
      meanAbsoluteDifference: this.absDiffCount > 0 ? this.absDiffSum / this.absDiffCount : undefined,
      shadowUnreadable: this.shadowUnreadable,
      servingUnreadable: this.servingUnreadable,
      serving: side(this.servingErrors, this.servingLatency),
      shadow: side(this.shadowErrors, this.shadowLatency),
    };
  }
}

export interface WindowOptions {
  /** The width of one time bucket (default 10 s). */
  bucketMs?: number;
  /** How many buckets the window spans (default 30: 5 minutes). */
  buckets?: number;
}

export class ComparisonStatistics {
  private readonly bucketMs: number;
  private readonly ring: { slot: number; tally: Tally }[];
  private readonly total = new Tally();

  constructor({ bucketMs = 10_000, buckets = 30 }: WindowOptions = {}) {
    if (!(bucketMs > 0) || !Number.isInteger(buckets) || buckets < 1)
      throw new Error(`a comparison window needs bucketMs > 0 and buckets >= 1, not ${bucketMs} and ${buckets}`);
    this.bucketMs = bucketMs;
    this.ring = Array.from({ length: buckets }, () => ({ slot: -1, tally: new Tally() }));
  }

  /** The window's length: `window(now)` covers the bucket of `now` and the buckets before it, within windowMs. */
  get windowMs(): number {
    return this.bucketMs * this.ring.length;
  }

  /** Records one pair of answers, received at `at` (ms since the epoch). */
  record(outcome: PairOutcome, at: number): void {
    this.total.record(outcome);
    const slot = Math.floor(at / this.bucketMs);
    const entry = this.ring[slot % this.ring.length];
    if (entry.slot !== slot) {
      // An older pair than the bucket holds: it belongs to no window any more.
      if (entry.slot > slot) return;
      entry.slot = slot;
      entry.tally = new Tally();
    }
    entry.tally.record(outcome);
  }

  /** The figures of the buckets within the window ending at `now`. */
  window(now: number): ComparisonFigures {
    return this.windowTally(now).figures();
  }

  /** The figures since the first pair recorded. */
  sinceStart(): ComparisonFigures {
    return this.total.figures();
  }

  /** The window ending at `now` and the total, as data to sum with other pods' (figuresOf). */
  data(now: number): { window: TallyData; sinceStart: TallyData } {
    return { window: this.windowTally(now).data(), sinceStart: this.total.data() };
  }

  private windowTally(now: number): Tally {
    const current = Math.floor(now / this.bucketMs);
    const sum = new Tally();
    for (const entry of this.ring)
      if (entry.slot > current - this.ring.length && entry.slot <= current) sum.add(entry.tally);
    return sum;
  }
}

/** The figures of several tallies summed (the pods of one serving variant, or of all of them). */
export function figuresOf(parts: readonly TallyData[]): ComparisonFigures {
  const sum = new Tally();
  for (const p of parts) sum.add(Tally.from(p));
  return sum.figures();
}
