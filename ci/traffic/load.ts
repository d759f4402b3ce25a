// A load client for the local cluster's gateway: sends requests at a given rate, open loop (each at
// its time, whether or not earlier ones have been answered, up to a generous cap of requests in
// flight that the report counts when it is reached), gives each request a deadline near its
// expected duration, and records for each one when it started and ended, its status (0 when no
// complete answer came: connection refused or reset, an answer cut short, the deadline passed), and
// which backend answered (the model server names its pod, model instance and version). Every run is
// bounded in count and in time. Used by tests, the benchmark and the demo. `servedProblems` is the
// one rule of what a served request is (a 2xx, from a backend of the endpoint, in time).
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
  /**
   * Requests started per second, open loop: a request is sent at its time whether or not earlier
   * ones have been answered (so a stalled backend shows as latency, not as fewer requests). When
   * omitted, closed loop: as fast as `concurrency` allows.
   */
  rate?: number;
  /**
   * Most requests in flight at once. With a `rate`, a cap that a healthy run never reaches: a request
   * due while it is reached waits for a slot, and the report counts it (`capped`).
   */
  concurrency: number;
  /** How long the model server should take for request i (header x-demo-sleep-ms); 0 or undefined: no wait. */
  sleepMs?: (i: number) => number;
  headers?: Record<string, string>;
  method?: 'GET' | 'POST';
  body?: string;
  /** Headers and body of request i, over `headers` and `body` (a distinct inference id and payload, say). */
  requestFor?: (i: number) => { headers?: Record<string, string>; body?: string };
  /** Keep each answer's body in its sample (`answer`), to compare with what was captured. */
  keepAnswers?: boolean;
  /**
   * How long past its expected duration (its `sleepMs`) a request may take before it is cut and
   * counted as failed (status 0); default 3 s.
   */
  timeoutMs?: number;
}

export const defaultTimeoutMs = 3000;

export interface Backend {
  pod: string;
  namespace?: string;
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
  /** How long the model server was asked to take (x-demo-sleep-ms), in ms. */
  expectedMs: number;
  /** HTTP status, or 0 when no complete answer came (connection refused or reset, cut short, time-out). */
  status: number;
  error?: string;
  backend?: Backend;
  /** The answer's body, when the run keeps them. */
  answer?: Buffer;
  /**
   * Where a slow request's time went, to tell a stalled client from a stalled gateway or backend:
   * `connectMs` is how long opening a new connection took (absent on a reused one), `headersMs`
   * when the answer's status line came, both from `start`; `lateMs` how long after its time an
   * open-loop request was sent (the client itself stalled).
   */
  timing?: {
    connectMs?: number;
    headersMs?: number;
    lateMs?: number;
    /** From `start` to the model server receiving the request (its x-model-received-at), and the time it took there. */
    reachedMs?: number;
    serverMs?: number;
    /**
     * How long this client's own event loop could not run (blocked by other work of its process, or
     * waiting for a CPU) while the request was on its way to the model server or its answer on the
     * way back: a request written or read late by the client was not slow in the gateway or the
     * backend. Never counted while the model server held the request (from its x-model-received-at
     * to its x-model-answered-at), nor for an answer without those (not a model server's). Filled in
     * when the run is done.
     */
    clientStalledMs?: number;
  };
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
  /** The most any request took beyond what it asked the server to take (its x-demo-sleep-ms), in ms. */
  worstExtraMs: number;
  /** Requests that waited for a slot because the in-flight cap was reached (an open-loop run that was not). */
  capped: number;
  errors: string[];
}

export interface LoadRun {
  readonly samples: readonly Sample[];
  /** Requests so far that waited for a slot because the in-flight cap was reached. */
  readonly capped: number;
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

export function report(samples: readonly Sample[], durationMs: number, capped = 0): LoadReport {
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
    latency: {
      p50: percentile(latencies, 50),
      p90: percentile(latencies, 90),
      p99: percentile(latencies, 99),
      max: latencies.at(-1) ?? 0,
    },
    worstExtraMs: Math.max(0, ...samples.map(extraMs)),
    capped,
    errors: [...errors].slice(0, 10),
  };
}

/**
 * How long a request took beyond what it asked the server to take, less the time this client's own
 * event loop stood still while the request was on its way (a stall of the test process is not one of
 * the data plane; a gateway stalled at the very same moment would be missed, one of the model server
 * never is).
 */
export const extraMs = (s: Sample): number => s.end - s.start - s.expectedMs - (s.timing?.clientStalledMs ?? 0);

/** Periods (ms on a run's clock) in which a client's event loop could not run. */
export interface ClientStall {
  from: number;
  to: number;
}

/** How long, in total, the `stalls` overlap [start, end]. */
export function stalledWithin(stalls: readonly ClientStall[], start: number, end: number): number {
  let ms = 0;
  for (const x of stalls) ms += Math.max(0, Math.min(x.to, end) - Math.max(x.from, start));
  return ms;
}

export interface ServedRule {
  /**
   * The model instances of the endpoint under test that may answer (its Services' names, as its
   * status lists them). An answer must name one (the model server's `instance`), or come from a pod
   * of one (`<instance>-...`) when the server names no instance (the scikit-learn server).
   */
  backends: readonly string[];
  /** The namespace of the endpoint, when answers name theirs. */
  namespace?: string;
  /** The most a request may take beyond what it asked the server to take, in ms. */
  maxExtraMs: number;
  /** What else a right answer must hold (a prediction's labels, say): a reason when it does not. */
  answer?: (s: Sample) => string | undefined;
}

/**
 * Why each request that was not served as a user expects was not: no answer or not a 2xx, an answer
 * from anything but a backend of the endpoint, too slow; and the cap of an open-loop run reached
 * (sends held back behind slow answers, which hides their slowness). Empty when every request was served.
 */
export function servedProblems(samples: readonly Sample[], rule: ServedRule, capped = 0): string[] {
  const problems: string[] = [];
  const at = (s: Sample) => `request ${s.i} (sent at ${(s.start / 1000).toFixed(1)} s)`;
  const ownPod = (pod: string) => rule.backends.some((b) => pod.startsWith(`${b}-`));
  for (const s of samples) {
    if (s.status < 200 || s.status >= 300) {
      problems.push(
        `${at(s)}: ${s.status === 0 ? `no answer (${s.error ?? 'unknown'})` : `status ${s.status}`}${s.backend ? ` from ${s.backend.pod}` : ''}`,
      );
      continue;
    }
    const b = s.backend;
    if (!b) problems.push(`${at(s)}: ${s.status} that names no backend (not a model server's answer)`);
    else if (b.instance !== undefined ? !rule.backends.includes(b.instance) : !ownPod(b.pod)) {
      problems.push(
        `${at(s)}: ${s.status} from ${b.instance ?? b.model ?? '?'} (pod ${b.pod}), not a backend of the endpoint (${rule.backends.join(', ')})`,
      );
    } else if (rule.namespace && b.namespace !== undefined && b.namespace !== rule.namespace) {
      problems.push(
        `${at(s)}: ${s.status} from pod ${b.pod} of namespace ${b.namespace}, not the endpoint's ${rule.namespace}`,
      );
    } else {
      const wrong = rule.answer?.(s);
      if (wrong) problems.push(`${at(s)}: ${s.status} from pod ${b.pod}: ${wrong}`);
    }
    if (extraMs(s) > rule.maxExtraMs)
      problems.push(
        `${at(s)}: took ${extraMs(s).toFixed(0)} ms beyond the ${s.expectedMs} ms it asked for, more than ${rule.maxExtraMs} ms${timingOf(s)}`,
      );
  }
  if (capped > 0)
    problems.push(`${capped} requests waited for the in-flight cap: answers were slow enough to hold sends back`);
  return problems;
}

/** One line for logs and test output: counts, shares per instance, latency percentiles. */
export function describeReport(r: LoadReport): string {
  const answered = Object.values(r.byInstance).reduce((a, b) => a + b, 0);
  const shares = Object.entries(r.byInstance)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v} (${((100 * v) / Math.max(1, answered)).toFixed(1)}%)`)
    .join(', ');
  const statuses = Object.entries(r.byStatus)
    .map(([k, v]) => `${k === '0' ? 'no answer' : k}: ${v}`)
    .join(', ');
  const latency = `latency p50 ${r.latency.p50.toFixed(0)} ms, p90 ${r.latency.p90.toFixed(0)} ms, p99 ${r.latency.p99.toFixed(0)} ms, max ${r.latency.max.toFixed(0)} ms, worst beyond the asked duration ${r.worstExtraMs.toFixed(0)} ms`;
  return `${r.sent} requests in ${(r.durationMs / 1000).toFixed(1)}s; ${statuses}; failed ${r.failed}; by instance: ${shares}; ${latency}${r.capped ? `; ${r.capped} held back by the in-flight cap` : ''}${r.errors.length ? `; errors: ${r.errors.join(' | ')}` : ''}`;
}

/** Where a request's time went, for a message: " (new connection in 1003 ms, status line at 1041 ms)". */
export function timingOf(s: Sample): string {
  const t = s.timing;
  if (!t) return '';
  const parts = [
    t.connectMs === undefined ? 'reused connection' : `new connection in ${t.connectMs.toFixed(0)} ms`,
    ...(t.reachedMs === undefined
      ? []
      : [`reached the model server at ${t.reachedMs.toFixed(0)} ms, answered there in ${t.serverMs!.toFixed(0)} ms`]),
    ...(t.headersMs === undefined ? [] : [`status line at ${t.headersMs.toFixed(0)} ms`]),
    ...(t.lateMs !== undefined && t.lateMs >= 10 ? [`sent ${t.lateMs.toFixed(0)} ms after its time`] : []),
    ...(t.clientStalledMs ? [`the client's event loop stood still ${t.clientStalledMs.toFixed(0)} ms meanwhile`] : []),
  ];
  return ` (${parts.join(', ')})`;
}

/** How often a run checks that its client's event loop runs. */
const stallProbeEveryMs = 10;

export function startLoad(o: LoadOptions): LoadRun {
  const url = new URL(o.url);
  const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency });
  const samples: Sample[] = [];
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;
  const slack = o.timeoutMs ?? defaultTimeoutMs;
  let stopped = false;
  let inFlight = 0;
  let capped = 0;
  let slotFree: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;

  const send = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const sleep = o.sleepMs?.(i) ?? 0;
      const start = elapsed();
      const sample: Sample = { i, start, end: 0, expectedMs: sleep, status: 0, timing: {} };
      if (o.rate) sample.timing!.lateMs = Math.max(0, start - (i * 1000) / o.rate);
      samples.push(sample);
      const own = o.requestFor?.(i);
      const body = own?.body ?? o.body;
      const headers: Record<string, string> = {
        host: o.host,
        ...o.headers,
        ...own?.headers,
        ...(sleep > 0 ? { 'x-demo-sleep-ms': String(sleep) } : {}),
      };
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      let deadline: NodeJS.Timeout | undefined;
      const finish = (status: number, body: string, error?: string) => {
        if (sample.end) return;
        clearTimeout(deadline);
        sample.end = elapsed();
        sample.status = status;
        if (error) sample.error = error;
        try {
          const parsed = JSON.parse(body) as Backend;
          if (parsed && typeof parsed.pod === 'string') {
            sample.backend = {
              pod: parsed.pod,
              namespace: parsed.namespace,
              instance: parsed.instance,
              version: parsed.version,
              model: parsed.model,
            };
            if (Array.isArray(parsed.labels)) sample.backend.labels = parsed.labels;
          }
        } catch {
          // Not one of the model servers' answers (the gateway's own 404 or 503, say).
        }
        resolve();
      };
      const req = request(
        {
          host: url.hostname,
          port: url.port || 80,
          path: `${url.pathname}${url.search}`,
          method: o.method ?? 'GET',
          headers,
          agent,
        },
        (res) => {
          sample.timing!.headersMs = elapsed() - start;
          const receivedAt = Number(res.headers['x-model-received-at']);
          const answeredAt = Number(res.headers['x-model-answered-at']);
          if (receivedAt > 0 && answeredAt >= receivedAt) {
            sample.timing!.reachedMs = receivedAt - (performance.timeOrigin + t0 + start);
            sample.timing!.serverMs = answeredAt - receivedAt;
          }
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const answer = Buffer.concat(chunks);
            if (o.keepAnswers) sample.answer = answer;
            finish(res.statusCode ?? 0, answer.toString('utf8'));
          });
          res.on('error', (err) => finish(0, '', `response: ${err.message}`));
          // A connection cut after the headers: the answer is incomplete, whatever its status said.
          res.on('close', () => finish(0, '', `answer cut short after status ${res.statusCode}`));
        },
      );
      req.on('socket', (socket) => {
        // A socket from the keep-alive pool is connected already; a new one reports when it is.
        if (socket.connecting) socket.once('connect', () => (sample.timing!.connectMs = elapsed() - start));
      });
      deadline = setTimeout(() => req.destroy(new Error(`no answer within ${sleep + slack} ms`)), sleep + slack);
      req.on('error', (err: Error & { code?: string }) => finish(0, '', err.code ?? err.message));
      req.end(body);
    });

  // This client's event loop, watched: when it could not run (other work of the test process, or no
  // CPU for it), its requests were written or their answers read late, whatever the data plane did.
  const stalls: ClientStall[] = [];
  let tick = elapsed();
  const monitor = setInterval(() => {
    const now = elapsed();
    const lateBy = now - tick - stallProbeEveryMs;
    tick = now;
    if (lateBy >= 5) stalls.push({ from: now - lateBy, to: now });
  }, stallProbeEveryMs);

  const done = (async () => {
    const pending: Promise<void>[] = [];
    timer = setTimeout(() => {
      stopped = true;
      wake?.();
      slotFree?.();
    }, o.maxDurationMs);
    for (let i = 0; i < o.requests && !stopped; i++) {
      if (o.rate) {
        const wait = (i * 1000) / o.rate - elapsed();
        if (wait > 0)
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, wait);
          });
        if (stopped) break;
        if (inFlight >= o.concurrency) capped++;
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
    clearInterval(monitor);
    agent.destroy();
    for (const s of samples) {
      const t = s.timing!;
      if (t.reachedMs === undefined || t.serverMs === undefined) continue;
      const reached = Math.min(s.end, Math.max(s.start, s.start + t.reachedMs));
      const answered = Math.min(s.end, reached + t.serverMs);
      const stalled = stalledWithin(stalls, s.start, reached) + stalledWithin(stalls, answered, s.end);
      if (stalled > 0) t.clientStalledMs = stalled;
    }
    return report(samples, elapsed(), capped);
  })();

  return {
    samples,
    get capped() {
      return capped;
    },
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

/**
 * Where the p-th percentile of the population the sorted samples come from lies, at about 99.9%
 * (z = 3.29), whatever its distribution: the count of samples under the true percentile is binomial
 * (n, p/100), so the order statistics at the ends of that count's interval bound it. An end that
 * falls beyond the samples (too few of them for this percentile, say fewer than about 1,100 for
 * the 99th) is -Infinity or Infinity: the run cannot tell. Two runs whose intervals do not overlap
 * differ beyond chance.
 */
export function percentileInterval(sorted: readonly number[], p: number, z = 3.29): [number, number] {
  const n = sorted.length;
  const q = p / 100;
  const half = z * Math.sqrt(n * q * (1 - q));
  // 0-based indexes of the order statistics of ranks floor(nq - half) and ceil(nq + half) + 1.
  const low = Math.floor(n * q - half) - 1;
  const high = Math.ceil(n * q + half);
  return [low >= 0 && n > 0 ? sorted[low] : -Infinity, high <= n - 1 ? sorted[high] : Infinity];
}
