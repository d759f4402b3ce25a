// A Prometheus instant-query client for the rollout's metric gates: one number per query, or why
// there is none (no series yet, NaN, the query failed, Prometheus unreachable), never an exception.
import type { Measurement } from '../rollout/analysis.ts';

export interface PrometheusClient {
  query(promql: string, at: Date): Promise<Measurement>;
}

interface QueryAnswer {
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: 'vector' | 'scalar' | 'matrix' | 'string'; result: unknown };
}

export function prometheusClient(baseUrl: string, timeoutMs = 10_000): PrometheusClient {
  return {
    async query(promql, at) {
      const url = `${baseUrl.replace(/\/+$/, '')}/api/v1/query?${new URLSearchParams({ query: promql, time: String(at.getTime() / 1000) }).toString()}`;
      let answer: QueryAnswer;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
        answer = (await res.json()) as QueryAnswer;
        if (!res.ok || answer.status !== 'success')
          return { error: `Prometheus at ${baseUrl} answered ${res.status}: ${answer.error ?? 'error'}` };
      } catch (err) {
        return { error: `Prometheus at ${baseUrl} is unreachable: ${(err as Error).message}` };
      }
      const { resultType, result } = answer.data ?? { resultType: 'vector', result: [] };
      let text: string | undefined;
      if (resultType === 'scalar') text = (result as [number, string])[1];
      else if (resultType === 'vector') {
        const series = result as { value: [number, string] }[];
        if (series.length > 1)
          return { error: `the query returned ${series.length} series, not one number: aggregate it (sum, max...)` };
        text = series[0]?.value[1];
      } else return { error: `the query returned a ${resultType}, not one number` };
      if (text === undefined) return { empty: 'no series: no requests measured yet?' };
      const value = Number(text);
      return Number.isNaN(value) ? { empty: 'NaN: no requests in the interval?' } : { value };
    },
  };
}
