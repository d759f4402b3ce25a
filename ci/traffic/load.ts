// A load client for the local cluster's gateway: sends requests at a given rate with a bounded
// number in flight, and records for each one when it started and ended, its status (0 when the
// connection failed), and which backend answered (the model server names its pod, model instance
// and version). Every run is bounded in count and in time. Used by tests, the benchmark and the demo.
import { Agent, request } from 'node:http';

export interface LoadOptions {
  /** Where to send, e.g. http://198.19.0.2:80/predict. */
  url: string;
  /** The endpoint's host name (the Host header the gateway routes by). */
  host: string;
  /** Upper bound of requests sent. */
  requests: number;
  /** Upper bound of the run's length; sending stops then, and requests still in flight are awaited. */
  maxDurationMs: number;
  /** Requests started per second (open loop); when omitted, as fast as `concurrency` allows. */
  rate?: number;
  /** Most requests in flight at once. */
  concurrency: number;
  /** How long the model server should take for request i (header x-demo-sleep-ms); 0 or undefined: no wait. */
  sleepMs?: (i: number) => number;
  headers?: Record<string, string>;
  method?: 'GET' | 'POST';
  body?: string;
  /** Per-request bound; a request that takes longer counts as a failure (status 0). */
  timeoutMs?: number;
}

export interface Backend {
  pod: string;
  instance?: string;
  version?: string;
  model?: string;
  /** The class names the answer gives, when it is a prediction (the scikit-learn server's `labels`). */
  labels?: string[];
}

export interface Sample {
  i: number;
  /** ms since the run started. */
  start: number;
  end: number;
  /** HTTP status, or 0 when no answer came (connection refused or reset, time-out). */
  status: number;
  error?: string;
  backend?: Backend;
}

export interface LoadReport {
  sent: number;
  durationMs: number;
  byStatus: Record<string, number>;
  /** Answers per model instance (`-` for answers that named none). */
  byInstance: Record<string, number>;
  /** Requests a user would call failed: no answer, or any status but 2xx (a 404 means the gateway had no route). */
  failed: number;
  /** Latency percentiles of every request, in ms. */
  latency: { p50: number; p90: number; p99: number; max: number };
  errors: string[];
}

export interface LoadRun {
  readonly samples: readonly Sample[];
  /** ms since the run started: the clock of the samples' start and end. */
  elapsed(): number;
  /** Stops sending; requests in flight finish. */
  stop(): void;
  readonly done: Promise<LoadReport>;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function report(samples: readonly Sample[], durationMs: number): LoadReport {
  const byStatus: Record<string, number> = {};
  const byInstance: Record<string, number> = {};
  const errors = new Set<string>();
  for (const s of samples) {
    byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
    if (s.status !== 0) byInstance[s.backend?.instance ?? '-'] = (byInstance[s.backend?.instance ?? '-'] ?? 0) + 1;
    if (s.error) errors.add(s.error);
  }
  const latencies = samples.map((s) => s.end - s.start).sort((a, b) => a - b);
  return {
    sent: samples.length,
    durationMs,
    byStatus,
    byInstance,
    failed: samples.filter((s) => s.status < 200 || s.status >= 300).length,
    latency: { p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 },
    errors: [...errors].slice(0, 10),
  };
}

/** One line for logs and test output: counts, shares per instance, latency percentiles. */
export function describeReport(r: LoadReport): string {
  const answered = Object.values(r.byInstance).reduce((a, b) => a + b, 0);
  const shares = Object.entries(r.byInstance)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v} (${((100 * v) / Math.max(1, answered)).toFixed(1)}%)`)
    .join(', ');
  const statuses = Object.entries(r.byStatus).map(([k, v]) => `${k === '0' ? 'no answer' : k}: ${v}`).join(', ');
  return `${r.sent} requests in ${(r.durationMs / 1000).toFixed(1)}s; ${statuses}; failed ${r.failed}; by instance: ${shares}; latency p50 ${r.latency.p50.toFixed(0)} ms, p90 ${r.latency.p90.toFixed(0)} ms, p99 ${r.latency.p99.toFixed(0)} ms, max ${r.latency.max.toFixed(0)} ms${r.errors.length ? `; errors: ${r.errors.join(' | ')}` : ''}`;
}

export function startLoad(o: LoadOptions): LoadRun {
  const url = new URL(o.url);
  const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  const samples: Sample[] = [];
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;
  let stopped = false;
  let inFlight = 0;
  let slotFree: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const send = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const sample: Sample = { i, start: elapsed(), end: 0, status: 0 };
      samples.push(sample);
      const sleep = o.sleepMs?.(i) ?? 0;
      const headers: Record<string, string> = { host: o.host, ...o.headers, ...(sleep > 0 ? { 'x-demo-sleep-ms': String(sleep) } : {}) };
      if (o.body !== undefined) headers['content-type'] ??= 'application/json';
      const finish = (status: number, body: string, error?: string) => {
        if (sample.end) return;
        sample.end = elapsed();
        sample.status = status;
        if (error) sample.error = error;
        try {
          const parsed = JSON.parse(body) as Backend;
          if (parsed && typeof parsed.pod === 'string') {
            sample.backend = { pod: parsed.pod, instance: parsed.instance, version: parsed.version, model: parsed.model };
            if (Array.isArray(parsed.labels)) sample.backend.labels = parsed.labels;
          }
        } catch {
          // Not one of the model servers' answers (the gateway's own 404 or 503, say).
        }
        resolve();
      };
      const req = request(
        { host: url.hostname, port: url.port || 80, path: `${url.pathname}${url.search}`, method: o.method ?? 'GET', headers, agent, timeout: o.timeoutMs ?? 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => finish(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
          res.on('error', (err) => finish(0, '', `response: ${err.message}`));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs ?? 30_000} ms`)));
      req.on('error', (err: Error & { code?: string }) => finish(0, '', err.code ?? err.message));
      req.end(o.body);
    });

  const done = (async () => {
    const pending: Promise<void>[] = [];
    const deadline = o.maxDurationMs;
    timer = setTimeout(() => {
      stopped = true;
      wake?.();
      slotFree?.();
    }, deadline);
    for (let i = 0; i < o.requests && !stopped; i++) {
      if (o.rate) {
        const due = (i * 1000) / o.rate;
        const wait = due - elapsed();
        if (wait > 0) await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, wait);
        });
        if (stopped) break;
      }
      while (inFlight >= o.concurrency && !stopped) await new Promise<void>((resolve) => (slotFree = resolve));
      if (stopped) break;
      inFlight++;
      pending.push(
        send(i).finally(() => {
          inFlight--;
          slotFree?.();
        }),
      );
    }
    clearTimeout(timer);
    await Promise.all(pending);
    agent.destroy();
    return report(samples, elapsed());
  })();

  return {
    samples,
    elapsed,
    stop() {
      stopped = true;
      wake?.();
      slotFree?.();
    },
    done,
  };
}

/** The binomial interval around p for n trials at about 99.9% (z = 3.29): a share outside it is a real difference. */
export function binomialInterval(p: number, n: number, z = 3.29): [number, number] {
  const sd = Math.sqrt((p * (1 - p)) / n);
  return [p - z * sd, p + z * sd];
}
