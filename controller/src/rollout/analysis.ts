// Metric gates: the PromQL of each check (built-in measures per data plane, or the user's query with
// its placeholders filled in), and what one evaluation does to a check's record. Pure: the
// reconciler runs the queries and hands the values over.
import type { AnalysisCheck, CheckStatus } from '../api/generated.ts';
import { regexEscaped, requestMetrics, serviceMatchers, type DataPlane } from '../desired/data-plane-metrics.ts';

/** Where the built-in measures come from: the metrics the data plane exports. */
export type MetricsSource = DataPlane;

/** A check as the spec declares it, and its record in status.rollout.analysis. */
export type CheckSpec = AnalysisCheck;
export type CheckRecord = CheckStatus;

export interface QueryContext {
  namespace: string;
  endpoint: string;
  version: string;
  previousVersion: string;
  /** Services (model instances) of the new version, and of the serving one. */
  services: string[];
  previousServices: string[];
}

export const checkDefaults = { intervalSeconds: 30, failureLimit: 0, inconclusiveLimit: 3 } as const;

const alternatives = (names: readonly string[]) => names.map(regexEscaped).join('|') || '^$';

/** The built-in measures, per data plane: the new version's 5xx share (0..1) and its p99 latency in milliseconds. */
function builtin(source: MetricsSource, measure: 'errorRate' | 'latencyP99'): string {
  const m = requestMetrics[source];
  const of = serviceMatchers(source, '{{namespace}}', '{{services}}');
  const requests = (extra = '') => `sum(rate(${m.requests}{${of}${extra}}[{{interval}}]))`;
  if (measure === 'errorRate') return `(${requests(`,${m.status}=~"5.."`)} or vector(0)) / ${requests()}`;
  return `${m.latencyToMs}histogram_quantile(0.99, sum by (le) (rate(${m.latencyBuckets}{${of}}[{{interval}}])))`;
}

/** The PromQL a check runs, placeholders filled in (none for agreement, which the model agents measure). */
export function renderQuery(check: CheckSpec, source: MetricsSource, ctx: QueryContext): string {
  if (check.builtin === 'agreement') return '';
  const template = check.builtin ? builtin(source, check.builtin) : (check.query ?? '');
  const values: Record<string, string> = {
    namespace: ctx.namespace,
    endpoint: ctx.endpoint,
    version: ctx.version,
    previousVersion: ctx.previousVersion,
    services: alternatives(ctx.services),
    previousServices: alternatives(ctx.previousServices),
    interval: `${check.intervalSeconds ?? checkDefaults.intervalSeconds}s`,
  };
  return template.replace(/\{\{\s*(\w+)\s*\}\}/g, (whole, key: string) => values[key] ?? whole);
}

/** What a query gave: a number, nothing (no data yet, NaN), or an error. */
export type Measurement = { value: number } | { empty: string } | { error: string };

const format = (n: number) => (Number.isInteger(n) ? String(n) : n.toPrecision(4));

export function bounds(check: CheckSpec): string {
  return [check.min !== undefined ? `>= ${check.min}` : '', check.max !== undefined ? `<= ${check.max}` : '']
    .filter(Boolean)
    .join(' and ');
}

/** One evaluation applied to a check's record; an inconclusive one names the query it ran, so that a user can run it too. */
export function evaluate(
  check: CheckSpec,
  record: CheckRecord | undefined,
  m: Measurement,
  at: string,
  query?: string,
): CheckRecord {
  const failures = record?.failures ?? 0;
  const inconclusive = record?.inconclusive ?? 0;
  if ('value' in m) {
    const ok = (check.max === undefined || m.value <= check.max) && (check.min === undefined || m.value >= check.min);
    return {
      name: check.name,
      value: format(m.value),
      result: ok ? 'Passed' : 'Failed',
      failures: ok ? failures : failures + 1,
      inconclusive: 0,
      evaluatedAt: at,
      message: `${check.name} = ${format(m.value)}, must be ${bounds(check)}`,
    };
  }
  return {
    name: check.name,
    ...(record?.value !== undefined ? { value: record.value } : {}),
    result: 'Inconclusive',
    failures,
    inconclusive: inconclusive + 1,
    evaluatedAt: at,
    message: `${'empty' in m ? `${check.name}: no value (${m.empty})` : `${check.name}: the query failed (${m.error})`}${query ? `; query: ${query}` : ''}`,
  };
}

/** The check that fails the rollout, if any: too many evaluations out of bounds, or inconclusive in a row. */
export function failing(
  checks: readonly CheckSpec[],
  records: readonly CheckRecord[],
): { check: CheckSpec; record: CheckRecord; why: string } | undefined {
  for (const check of checks) {
    const record = records.find((r) => r.name === check.name);
    if (!record) continue;
    if ((record.failures ?? 0) > (check.failureLimit ?? checkDefaults.failureLimit)) {
      return {
        check,
        record,
        why: `${check.name} = ${record.value}, outside its bound (${bounds(check)}) ${record.failures} time(s), more than its failureLimit ${check.failureLimit ?? checkDefaults.failureLimit}`,
      };
    }
    if ((record.inconclusive ?? 0) > (check.inconclusiveLimit ?? checkDefaults.inconclusiveLimit)) {
      return {
        check,
        record,
        why: `${check.name} was inconclusive ${record.inconclusive} times in a row, more than its inconclusiveLimit ${check.inconclusiveLimit ?? checkDefaults.inconclusiveLimit}: ${record.message}`,
      };
    }
  }
  return undefined;
}

/**
 * When a check is next due: an interval after its last evaluation, and never before an interval of
 * the current step has passed (a measure of the step's own traffic).
 */
export function dueAt(check: CheckSpec, records: readonly CheckRecord[], stepStartedAt: string | undefined): number {
  const interval = (check.intervalSeconds ?? checkDefaults.intervalSeconds) * 1000;
  const at = records.find((r) => r.name === check.name)?.evaluatedAt;
  return Math.max(at ? Date.parse(at) + interval : 0, stepStartedAt ? Date.parse(stepStartedAt) + interval : 0);
}

/** The checks due for evaluation now. */
export function due(
  checks: readonly CheckSpec[],
  records: readonly CheckRecord[],
  now: Date,
  stepStartedAt?: string,
): CheckSpec[] {
  return checks.filter((c) => dueAt(c, records, stepStartedAt) <= now.getTime());
}

/**
 * The checks that keep a baked step from moving on: those not yet evaluated during the step, and
 * those whose last evaluation was inconclusive (the step holds until they pass or fail).
 */
export function unsettled(
  checks: readonly CheckSpec[],
  records: readonly CheckRecord[],
  stepStartedAt: string,
): { check: CheckSpec; record?: CheckRecord }[] {
  return checks
    .map((check) => ({ check, record: records.find((r) => r.name === check.name) }))
    .filter(
      ({ record }) =>
        !record?.evaluatedAt ||
        Date.parse(record.evaluatedAt) < Date.parse(stepStartedAt) ||
        record.result !== 'Passed',
    );
}

export function nextCheckInMs(
  checks: readonly CheckSpec[],
  records: readonly CheckRecord[] | undefined,
  stepStartedAt: string | undefined,
  now: Date,
): number | undefined {
  if (!checks.length) return undefined;
  return Math.max(1000, Math.min(...checks.map((c) => dueAt(c, records ?? [], stepStartedAt) - now.getTime())));
}
