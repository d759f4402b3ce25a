// What the serving pods' agents say of the shadows they mirror to (the `shadows` of
// /-/agent/status), summed into status.shadows[].comparison: each agent reports its tallies, which
// add up exactly (compare/statistics.ts), so the endpoint's figures are those of every pod together.
import type { ShadowEntry } from '../api/generated.ts';
import { figuresOf, type ComparisonFigures, type TallyData } from '../compare/statistics.ts';

export type ShadowComparison = NonNullable<ShadowEntry['comparison']>;

/** One shadow as an agent reports it (docs/agent.md). */
export interface AgentShadowReport {
  name: string;
  url: string;
  dropped: number;
  skipped: number;
  windowSeconds: number;
  data: { window: TallyData; sinceStart: TallyData };
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** The shadows of an agent's status, leaving out any entry that is not as the agent writes it. */
export function shadowReports(body: unknown): AgentShadowReport[] {
  const list = (body as { shadows?: unknown } | null)?.shadows;
  if (!Array.isArray(list)) return [];
  return list.filter((x): x is AgentShadowReport => {
    const r = x as Partial<AgentShadowReport> | null;
    return (
      typeof r?.name === 'string' &&
      typeof r.url === 'string' &&
      isCount(r.dropped) &&
      isCount(r.skipped) &&
      isCount(r.windowSeconds) &&
      typeof r.data?.window === 'object' &&
      r.data.window !== null &&
      typeof r.data.sinceStart === 'object' &&
      r.data.sinceStart !== null
    );
  });
}

const ms = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 100) / 100);
const ratio = (x: number | undefined) =>
  x === undefined ? undefined : Math.min(1, Math.max(0, Math.round(x * 1e6) / 1e6));
/** Six significant digits: a figure that did not move does not change the status. */
const figure = (x: number) => Number(x.toPrecision(6));

function figures(f: ComparisonFigures) {
  const side = (s: ComparisonFigures['serving']) => ({
    ...(s.errorRate !== undefined ? { errorRate: ratio(s.errorRate) } : {}),
    ...(s.latencyP50Ms !== undefined ? { latencyP50Ms: ms(s.latencyP50Ms) } : {}),
    ...(s.latencyP99Ms !== undefined ? { latencyP99Ms: ms(s.latencyP99Ms) } : {}),
  });
  return {
    requests: f.requests,
    compared: f.compared,
    predictions: f.predictions,
    ...(f.agreement !== undefined ? { agreement: ratio(f.agreement) } : {}),
    ...(f.meanAbsoluteDifference !== undefined ? { meanAbsoluteDifference: figure(f.meanAbsoluteDifference) } : {}),
    serving: side(f.serving),
    shadow: side(f.shadow),
  };
}

/** The reports of one shadow, from the pods that answered (a pod still on an earlier config may report another Service). */
const reportsOf = (
  answers: readonly { shadows?: readonly AgentShadowReport[] }[],
  name: string,
  service: string,
): AgentShadowReport[] =>
  answers.flatMap((a) => (a.shadows ?? []).filter((s) => s.name === name && s.url.startsWith(`http://${service}.`)));

/** The figures since the start of each shadow (by its Service), exact, for its test's verdict. */
export function testFiguresOf(
  answers: readonly { shadows?: readonly AgentShadowReport[] }[],
  shadows: readonly { name: string; service: string }[],
): Map<string, ComparisonFigures> {
  const out = new Map<string, ComparisonFigures>();
  for (const { name, service } of shadows) {
    const reports = reportsOf(answers, name, service);
    if (reports.length) out.set(service, figuresOf(reports.map((r) => r.data.sinceStart)));
  }
  return out;
}

/**
 * The comparison of each shadow (by its Service) from the reports of the pods that answered; a
 * shadow no pod reports yet has none.
 */
export function comparisonsOf(
  answers: readonly { shadows?: readonly AgentShadowReport[] }[],
  shadows: readonly { name: string; service: string }[],
): Map<string, ShadowComparison> {
  const out = new Map<string, ShadowComparison>();
  for (const { name, service } of shadows) {
    const reports = reportsOf(answers, name, service);
    if (!reports.length) continue;
    out.set(service, {
      ...figures(figuresOf(reports.map((r) => r.data.sinceStart))),
      dropped: reports.reduce((n, r) => n + r.dropped + r.skipped, 0),
      pods: reports.length,
      window: {
        seconds: Math.max(...reports.map((r) => Math.round(r.windowSeconds))),
        ...figures(figuresOf(reports.map((r) => r.data.window))),
      },
    });
  }
  return out;
}
