// The verdict of a shadow test, pure: the criteria and the figures since the test started -> Pending,
// Passed or Failed, with the numbers and a message a person can act on. A test passes only once its
// duration is over; it fails at the end when a criterion does not hold or too few requests were
// compared, and before the end when the agreement is below its bound beyond reasonable doubt (the
// upper end of its 99.9% Wilson interval under the bound, after the minimum of compared requests):
// a bad candidate is stopped early, a good one is never failed by chance.
import type { ComparisonFigures } from './statistics.ts';

export interface ShadowTestCriteria {
  /** How long the test observes (ms). */
  durationMs: number;
  /** The fewest compared requests a verdict needs (>= 1). */
  minCompared: number;
  /** agreement >= minAgreement */
  minAgreement?: number;
  /** shadow error rate - serving error rate <= maxErrorRateDelta */
  maxErrorRateDelta?: number;
  /** shadow p99 latency / serving p99 latency <= maxLatencyP99Ratio */
  maxLatencyP99Ratio?: number;
}

export type VerdictPhase = 'Pending' | 'Passed' | 'Failed';

export interface Measured {
  compared: number;
  agreement?: number;
  errorRateDelta?: number;
  latencyP99Ratio?: number;
  elapsedMs: number;
}

export interface Verdict {
  phase: VerdictPhase;
  /** A condition's reason: Observing, Passed, CriteriaNotMet, AgreementTooLow, TooFewCompared. */
  reason: string;
  message: string;
  measured: Measured;
  /** The criteria that did not hold, each as "agreement 0.3267 < 0.97". */
  failed: string[];
}

/** z of a two-sided 99.9% interval. */
const z = 3.2905;

/** The upper end of the Wilson score interval of `k` successes in `n`. */
export function wilsonUpper(k: number, n: number): number {
  if (n === 0) return 1;
  const p = k / n;
  const z2 = z * z;
  const centre = p + z2 / (2 * n);
  const spread = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return Math.min(1, (centre + spread) / (1 + z2 / n));
}

const fmt = (x: number) => String(Number(x.toFixed(4)));

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

/** Checks criteria once, when the test is declared; the verdict assumes valid criteria. */
export function criteriaError(c: ShadowTestCriteria): string | undefined {
  if (!(c.durationMs > 0)) return `the duration must be positive, not ${c.durationMs} ms`;
  if (!Number.isInteger(c.minCompared) || c.minCompared < 1)
    return `minCompared must be an integer >= 1, not ${c.minCompared}`;
  if (c.minAgreement !== undefined && !(c.minAgreement >= 0 && c.minAgreement <= 1))
    return `the agreement bound must be within [0, 1], not ${c.minAgreement}`;
  if (c.maxErrorRateDelta !== undefined && !(c.maxErrorRateDelta >= -1 && c.maxErrorRateDelta <= 1))
    return `the errorRateDelta bound must be within [-1, 1], not ${c.maxErrorRateDelta}`;
  if (c.maxLatencyP99Ratio !== undefined && !(c.maxLatencyP99Ratio > 0))
    return `the latencyP99Ratio bound must be positive, not ${c.maxLatencyP99Ratio}`;
  return undefined;
}

export function measure(f: ComparisonFigures, elapsedMs: number): Measured {
  const servingRate = f.serving.errorRate;
  const shadowRate = f.shadow.errorRate;
  const servingP99 = f.serving.latencyP99Ms;
  const shadowP99 = f.shadow.latencyP99Ms;
  return {
    compared: f.compared,
    agreement: f.agreement,
    errorRateDelta: servingRate !== undefined && shadowRate !== undefined ? shadowRate - servingRate : undefined,
    latencyP99Ratio:
      servingP99 !== undefined && shadowP99 !== undefined && servingP99 > 0 ? shadowP99 / servingP99 : undefined,
    elapsedMs,
  };
}

/** The criteria that do not hold on `m`; a figure that cannot be measured does not hold. */
function unmet(c: ShadowTestCriteria, m: Measured, f: ComparisonFigures): string[] {
  const failed: string[] = [];
  if (c.minAgreement !== undefined && !(m.agreement !== undefined && m.agreement >= c.minAgreement)) {
    failed.push(
      `agreement ${m.agreement === undefined ? 'unmeasured' : `${fmt(m.agreement)} (${f.agreeing}/${f.predictions})`} < ${c.minAgreement}`,
    );
  }
  if (
    c.maxErrorRateDelta !== undefined &&
    !(m.errorRateDelta !== undefined && m.errorRateDelta <= c.maxErrorRateDelta)
  ) {
    const rates = `shadow ${f.shadow.errors}/${f.requests} - serving ${f.serving.errors}/${f.requests}`;
    failed.push(
      `errorRateDelta ${m.errorRateDelta === undefined ? 'unmeasured' : `${fmt(m.errorRateDelta)} (${rates})`} > ${c.maxErrorRateDelta}`,
    );
  }
  if (
    c.maxLatencyP99Ratio !== undefined &&
    !(m.latencyP99Ratio !== undefined && m.latencyP99Ratio <= c.maxLatencyP99Ratio)
  ) {
    const p99s = `shadow p99 ${fmt(f.shadow.latencyP99Ms ?? NaN)} ms / serving p99 ${fmt(f.serving.latencyP99Ms ?? NaN)} ms`;
    failed.push(
      `latencyP99Ratio ${m.latencyP99Ratio === undefined ? 'unmeasured' : `${fmt(m.latencyP99Ratio)} (${p99s})`} > ${c.maxLatencyP99Ratio}`,
    );
  }
  return failed;
}

/** The verdict of a test that started at `startedAt`, at `now` (ms), on the figures since its start. */
export function verdict(c: ShadowTestCriteria, figures: ComparisonFigures, startedAt: number, now: number): Verdict {
  const elapsedMs = Math.max(0, now - startedAt);
  const m = measure(figures, elapsedMs);
  const progress = `${figures.compared} requests compared (at least ${c.minCompared} needed), ${duration(elapsedMs)} of ${duration(c.durationMs)}`;
  const over = elapsedMs >= c.durationMs;
  const enough = figures.compared >= c.minCompared;
  if (enough && c.minAgreement !== undefined && wilsonUpper(figures.agreeing, figures.predictions) < c.minAgreement) {
    const failed = unmet(c, m, figures);
    return {
      phase: 'Failed',
      reason: 'AgreementTooLow',
      message: `${failed.join('; ')}, beyond doubt (99.9%) after ${progress}`,
      measured: m,
      failed,
    };
  }
  if (!over) {
    const sofar = m.agreement === undefined ? 'no prediction compared yet' : `agreement so far ${fmt(m.agreement)}`;
    return {
      phase: 'Pending',
      reason: 'Observing',
      message: `observing: ${progress}; ${sofar}`,
      measured: m,
      failed: [],
    };
  }
  if (!enough) {
    const failed = [`compared ${figures.compared} < ${c.minCompared}`];
    return {
      phase: 'Failed',
      reason: 'TooFewCompared',
      message: `the test ended with too few requests compared: ${progress}`,
      measured: m,
      failed,
    };
  }
  const failed = unmet(c, m, figures);
  if (failed.length > 0)
    return {
      phase: 'Failed',
      reason: 'CriteriaNotMet',
      message: `${failed.join('; ')} after ${progress}`,
      measured: m,
      failed,
    };
  return {
    phase: 'Passed',
    reason: 'Passed',
    message: `every criterion holds after ${progress}: ${held(c, m)}`,
    measured: m,
    failed: [],
  };
}

function held(c: ShadowTestCriteria, m: Measured): string {
  const parts: string[] = [];
  if (c.minAgreement !== undefined && m.agreement !== undefined)
    parts.push(`agreement ${fmt(m.agreement)} >= ${c.minAgreement}`);
  if (c.maxErrorRateDelta !== undefined && m.errorRateDelta !== undefined)
    parts.push(`errorRateDelta ${fmt(m.errorRateDelta)} <= ${c.maxErrorRateDelta}`);
  if (c.maxLatencyP99Ratio !== undefined && m.latencyP99Ratio !== undefined)
    parts.push(`latencyP99Ratio ${fmt(m.latencyP99Ratio)} <= ${c.maxLatencyP99Ratio}`);
  return parts.length > 0 ? parts.join(', ') : 'no bound given';
}
