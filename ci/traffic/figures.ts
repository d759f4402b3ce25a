// The figures the traffic tests claim, as checks that a regression fails: a rollback's speed and the
// failures a broken candidate may cause before it, and the load's cover of each switch of a run.
// Pure functions over a load run's samples, so that a unit test shows what each one catches.
import { binomialInterval, type Sample } from './load.ts';

const failed = (s: Sample) => s.status < 200 || s.status >= 300;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export interface RollbackFigures {
  /** When the first request failed, and when the rollback was seen (ms on the run's clock). */
  firstError: number;
  rollbackAt: number;
  /** Requests sent from the first error until the rollback, and how many of them failed. */
  sent: number;
  failed: number;
  /** The most that may fail of them: the candidate's share times its error rate, at the 99.9% bound. */
  bound: number;
}

/**
 * A broken candidate given `share` of the traffic, failing `errorRate` of its requests, must be rolled
 * back within `maxMs` of the first failed request, and of the requests sent from then until the
 * rollback no more may fail than its share allows (binomial, 99.9%). A window that ran past the
 * rollback would dilute them with requests the candidate no longer had a share of.
 */
export function rollbackProblems(
  samples: readonly Sample[],
  o: { rollbackAt: number; share: number; errorRate: number; maxMs?: number },
): { figures?: RollbackFigures; problems: string[] } {
  const first = samples.find(failed);
  if (!first) return { problems: ['no request failed: the candidate was not broken, or took no traffic'] };
  const maxMs = o.maxMs ?? 15_000;
  const window = samples.filter((s) => s.start >= first.start && s.start <= o.rollbackAt);
  const [, hi] = binomialInterval(o.share * o.errorRate, window.length);
  const figures: RollbackFigures = {
    firstError: first.start,
    rollbackAt: o.rollbackAt,
    sent: window.length,
    failed: window.filter(failed).length,
    bound: Math.floor(hi * window.length),
  };
  const problems: string[] = [];
  if (o.rollbackAt - first.start > maxMs)
    problems.push(
      `rolled back ${secs(o.rollbackAt - first.start)} after the first failed request, more than ${secs(maxMs)}`,
    );
  if (figures.failed > figures.bound) {
    problems.push(
      `${figures.failed} of ${figures.sent} requests failed from the first error to the rollback, more than the ${figures.bound} a ${o.share * 100}% share failing ${o.errorRate * 100}% allows (99.9%)`,
    );
  }
  return { figures, problems };
}

export interface Span {
  name: string;
  /** ms on the run's clock. */
  from: number;
  to: number;
  /** The model instances that may answer inside it (the old version's and the new one's). */
  backends: readonly string[];
}

/**
 * Each span (a switch, from the change to the old version's removal) was under load: at least 90% of
 * the requests its length asks at `rate` were sent inside it, and every answer to one of them came
 * from the span's own backends, not from a version before or after.
 */
export function coverageProblems(samples: readonly Sample[], spans: readonly Span[], rate: number): string[] {
  const problems: string[] = [];
  for (const span of spans) {
    const inside = samples.filter((s) => s.start >= span.from && s.start < span.to);
    const wanted = Math.floor(((span.to - span.from) / 1000) * rate * 0.9);
    if (inside.length < wanted || inside.length === 0)
      problems.push(
        `${span.name}: ${inside.length} requests sent in its ${secs(span.to - span.from)}, fewer than ${wanted} (90% of ${rate}/s)`,
      );
    const strangers = inside.filter(
      (s) => s.backend?.instance !== undefined && !span.backends.includes(s.backend.instance),
    );
    if (strangers.length) {
      const who = [...new Set(strangers.map((s) => s.backend!.instance!))].join(', ');
      problems.push(
        `${span.name}: ${strangers.length} answers from ${who}, neither the old nor the new version (${span.backends.join(', ')})`,
      );
    }
  }
  return problems;
}
