// Shadows mirrored by the agent: for `percent` of the requests, once the client has its whole answer,
// a copy of the request goes to the shadow's Service, and the two answers are compared (compare/).
// The client never waits for a shadow: the copy leaves after its answer ended, over connections of
// its own, with a timeout of its own and at most maxInFlight copies at a time (checked when the
// request arrives, before anything of it is kept). A request past that cap is `dropped`; so is one
// that arrives while the agent backs off from a shadow that refuses connections (none listens at its
// address: 0.1 s after a refusal, doubling up to 5 s, until a copy reaches it again), so that a shadow
// that is gone costs a connection attempt now and then rather than one per request. One that cannot
// be compared (a body or an answer larger than the agent keeps, an answer with a content-encoding) is
// `skipped`. All are counted.
import * as http from 'node:http';
import { compareAnswers, comparer, type Comparer } from '../compare/compare.ts';
import type { Answer } from '../compare/prediction.ts';
import { ComparisonStatistics, type ComparisonFigures, type TallyData } from '../compare/statistics.ts';
import type { ShadowConfig } from './config.ts';
import type { AgentMetrics } from './metrics.ts';

/**
 * Marks a copy the agent sends (its value: the comparison's name). An agent that receives one neither
 * mirrors it on nor takes it for a client's request: its record says `copyOf`.
 */
export const copyHeader = 'x-ml-operator-copy';

/**
 * The largest request body, and answer of each side, kept for a copy. With maxInFlight copies per
 * shadow, this bounds what mirroring holds in memory (3 x 256 KiB x 16 = 12 MiB per shadow by default).
 */
export const mirrorMaxBytes = 256 * 1024;

/** What a request carries to its shadows: all of it, kept while it streamed to the model. */
export interface MirroredRequest {
  method: string;
  /** Path and query, as the client sent them. */
  path: string;
  /** End-to-end headers (name, value, ...), without Host, Content-Length and Accept-Encoding. */
  headers: string[];
  body: Buffer;
}

/** A shadow's answer as recorded beside the serving one (Data Capture keeps it). */
export interface ShadowAnswer {
  shadow: string;
  status: number;
  latencyMs: number;
  contentType?: string;
  body: Buffer;
  truncated: boolean;
  /** Whether every prediction agreed; undefined when they were not compared. */
  agreed?: boolean;
}

export interface ShadowStatus {
  name: string;
  url: string;
  percent: number;
  inFlight: number;
  /** Requests not mirrored: the in-flight cap was reached, or the agent was backing off from refusals. */
  dropped: number;
  /** Requests mirrored or picked but not compared: a body or answer too large, or an encoded answer. */
  skipped: number;
  /** The figures of this pod, and the tallies the controller sums over the pods. */
  window: ComparisonFigures;
  sinceStart: ComparisonFigures;
  windowSeconds: number;
  data: { window: TallyData; sinceStart: TallyData };
}

/** One shadow as the agent mirrors to it now. Kept across configs while its Service and comparison are. */
export interface Comparison {
  config: ShadowConfig;
  comparer: Comparer;
  statistics: ComparisonStatistics;
  inFlight: number;
  dropped: number;
  skipped: number;
  /** The back-off from refused connections: none is sent before refusedUntil (performance.now() ms). */
  backoffMs: number;
  refusedUntil: number;
}

/** The back-off from a shadow that refuses connections: its first step and its longest. */
export const refusalBackoffMs = { first: 100, max: 5000 } as const;

const backingOff = (s: Comparison) => s.refusedUntil > 0 && s.refusedUntil > performance.now();

/** Errors that say at once that nothing listens at the shadow's address. */
const refusal = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

const sameComparison = (a: ShadowConfig, b: ShadowConfig) =>
  a.url === b.url && a.reference === b.reference && JSON.stringify(a.compare) === JSON.stringify(b.compare);

const isReset = (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET' || e.message === 'socket hang up';

export interface ShadowsOptions {
  metrics: AgentMetrics;
  now?: () => number;
}

/** A copy in flight, which SIGTERM may have to cut short. */
interface Copy {
  cancel(why: string): void;
  done: Promise<unknown>;
}

type SentAnswer = Omit<ShadowAnswer, 'shadow' | 'agreed'>;

export class Shadows {
  private shadows: Comparison[] = [];
  private readonly agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  private readonly copies = new Set<Copy>();
  /** Each mirrored request until its answers were handed on. */
  private readonly mirrors = new Set<Promise<unknown>>();
  private readonly metrics: AgentMetrics;
  private readonly now: () => number;
  private stopped = false;
  /** The endpoint's copy token (parseCopyToken), which the copies sent carry and a copy received must. */
  private copyToken: string | undefined;

  constructor({ metrics, now = Date.now }: ShadowsOptions) {
    this.metrics = metrics;
    this.now = now;
  }

  /**
   * Applies the shadows of a (new) config. A shadow whose Service and comparison are unchanged keeps
   * its figures (a shadow not ready is listed with percent 0, so it keeps them too); one whose
   * comparison changed starts over, so that no figure mixes two comparisons.
   */
  /**
   * The shadow a request is a copy for, when the agent of another pod of the endpoint sent it (its
   * copyHeader carries the endpoint's copy token); undefined for a client's request, whatever
   * header it sends.
   */
  copyOf(header: string | undefined): string | undefined {
    if (header === undefined) return undefined;
    if (!this.copyToken) return header;
    return header.startsWith(`${this.copyToken} `) ? header.slice(this.copyToken.length + 1) : undefined;
  }

  configure(configs: readonly ShadowConfig[], copyToken?: string): void {
    this.copyToken = copyToken;
    this.shadows = configs.map((config) => {
      const kept = this.shadows.find((s) => s.config.name === config.name && sameComparison(s.config, config));
      if (kept) {
        // A shadow listed at 0% had no ready pod: listed again, its new pods start without a back-off.
        if (kept.config.percent === 0 && config.percent > 0) kept.backoffMs = kept.refusedUntil = 0;
        kept.config = config;
        return kept;
      }
      const checked = comparer(config.compare);
      // parseShadowsConfig checked the comparison; a config that bypassed it compares whole answers.
      return {
        config,
        comparer: checked.ok ? checked.comparer : { spec: config.compare, segments: [] },
        statistics: new ComparisonStatistics(),
        inFlight: 0,
        dropped: 0,
        skipped: 0,
        backoffMs: 0,
        refusedUntil: 0,
      };
    });
    // The series exist from the start, so that a rate over them is 0 rather than absent.
    for (const s of this.shadows) {
      const shadow = s.config.name;
      this.metrics.shadowRequests.inc({ shadow, result: 'compared' }, 0);
      this.metrics.shadowPredictions.inc({ shadow, result: 'agree' }, 0);
      this.metrics.shadowPredictions.inc({ shadow, result: 'disagree' }, 0);
    }
  }

  /**
   * The shadows this request goes to, drawn once when it arrives; a shadow at its in-flight cap is
   * not picked (the request is counted as dropped), so that nothing of the request is kept for it.
   */
  pick(): Comparison[] {
    if (this.stopped || this.shadows.length === 0) return [];
    return this.shadows.filter((s) => {
      if (!(s.config.percent > 0 && Math.random() * 100 < s.config.percent)) return false;
      if (s.inFlight >= s.config.maxInFlight || backingOff(s)) {
        s.dropped++;
        this.metrics.shadowRequests.inc({ shadow: s.config.name, result: 'dropped' });
        return false;
      }
      // Held from now: the copy is sent, or given up, when the client has its answer.
      s.inFlight++;
      return true;
    });
  }

  /**
   * Gives back the picks of a request that is not mirrored: its client went away (not counted), or
   * its body or the model's answer cannot be compared (`skipped`).
   */
  release(picked: readonly Comparison[], skipped: boolean): void {
    for (const s of picked) {
      s.inFlight--;
      if (!skipped) continue;
      s.skipped++;
      this.metrics.shadowRequests.inc({ shadow: s.config.name, result: 'skipped' });
    }
  }

  /**
   * Sends the copy to each picked shadow and compares its answer with the serving one; once each has
   * answered, failed or timed out, hands the shadows' answers to `then` (a captured request's record).
   * SIGTERM waits for all of it, `then` included.
   */
  mirror(
    picked: readonly Comparison[],
    request: MirroredRequest,
    serving: Answer,
    then?: (answers: ShadowAnswer[]) => void,
  ): void {
    const sent = picked.map((s) => {
      const shadow = s.config.name;
      // Picked before a back-off began: not sent either.
      if (backingOff(s)) {
        s.inFlight--;
        s.dropped++;
        this.metrics.shadowRequests.inc({ shadow, result: 'dropped' });
        return Promise.resolve(undefined);
      }
      return this.send(s.config, request, (refused) => this.reached(s, refused))
        .then((answer): ShadowAnswer => {
          if (answer.truncated) {
            s.skipped++;
            this.metrics.shadowRequests.inc({ shadow, result: 'skipped' });
            return { shadow, ...answer };
          }
          // Under an agreement check the copy went to the serving version: its answer is the reference.
          const outcome =
            s.config.reference === 'copy'
              ? compareAnswers(s.comparer, answer, serving)
              : compareAnswers(s.comparer, serving, answer);
          s.statistics.record(outcome, this.now());
          const result = outcome.servingError ? 'serving_error' : outcome.shadowError ? 'shadow_error' : 'compared';
          this.metrics.shadowRequests.inc({ shadow, result });
          this.metrics.shadowDuration.observe({ shadow }, answer.latencyMs / 1000);
          if (outcome.predictions > 0) {
            this.metrics.shadowPredictions.inc({ shadow, result: 'agree' }, outcome.agreeing);
            this.metrics.shadowPredictions.inc({ shadow, result: 'disagree' }, outcome.predictions - outcome.agreeing);
          }
          return {
            shadow,
            ...answer,
            ...(outcome.compared ? { agreed: outcome.agreeing === outcome.predictions } : {}),
          };
        })
        .catch((): undefined => undefined)
        .finally(() => s.inFlight--);
    });
    const done = Promise.all(sent)
      .then((all) => then?.(all.filter((a): a is ShadowAnswer => a !== undefined)))
      .catch(() => {});
    this.mirrors.add(done);
    void done.finally(() => this.mirrors.delete(done));
  }

  status(): ShadowStatus[] {
    const now = this.now();
    return this.shadows.map((s) => ({
      name: s.config.name,
      url: s.config.url,
      percent: s.config.percent,
      inFlight: s.inFlight,
      dropped: s.dropped,
      skipped: s.skipped,
      window: s.statistics.window(now),
      sinceStart: s.statistics.sinceStart(),
      windowSeconds: s.statistics.windowMs / 1000,
      data: s.statistics.data(now),
    }));
  }

  /**
   * SIGTERM: no new copies; waits up to `timeoutMs` for those in flight, then ends them as failed
   * (a shadow error), so that every captured record that waits for them is handed to capture.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    const all = () => Promise.allSettled([...this.mirrors]);
    if (this.mirrors.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      for (const c of this.copies) c.cancel('the agent is stopping');
      await all();
    }
    this.agent.destroy();
  }

  /** Backs off from a shadow that refused a connection; a copy that reached it ends the back-off. */
  private reached(s: Comparison, refused: boolean): void {
    if (!refused) {
      s.backoffMs = 0;
      s.refusedUntil = 0;
      return;
    }
    // A copy sent before the back-off began, refused during it, does not lengthen it.
    if (backingOff(s)) return;
    s.backoffMs = Math.min(s.backoffMs ? s.backoffMs * 2 : refusalBackoffMs.first, refusalBackoffMs.max);
    s.refusedUntil = performance.now() + s.backoffMs;
  }

  /**
   * One copy to a shadow: its answer (status 0 when it never came: refused, reset, timed out, stopped).
   * `reached` is told whether a connection was refused (true) or the shadow answered (false).
   */
  private send(
    config: ShadowConfig,
    request: MirroredRequest,
    reached: (refused: boolean) => void,
  ): Promise<SentAnswer> {
    const started = performance.now();
    const url = new URL(config.url);
    let cancel: (why: string) => void = () => {};
    const done = new Promise<SentAnswer>((resolve) => {
      let finished = false;
      let current: http.ClientRequest | undefined;
      const finish = (status: number, contentType: string | undefined, body: Buffer, truncated = false) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve({ status, contentType, body, truncated, latencyMs: performance.now() - started });
      };
      const failed = () => finish(0, undefined, Buffer.alloc(0));
      cancel = (why) => {
        current?.destroy(new Error(why));
        failed();
      };
      const attempt = (n: number) => {
        const req = http.request({
          host: url.hostname.replace(/^\[|\]$/g, ''),
          port: Number(url.port) || 80,
          method: request.method,
          path: url.pathname.replace(/\/+$/, '') + request.path,
          // Raw headers get no Host from Node: the shadow's own, as a client of its Service would send.
          headers: [
            'host',
            url.host,
            ...request.headers,
            copyHeader,
            this.copyToken ? `${this.copyToken} ${config.name}` : config.name,
            'content-length',
            String(request.body.length),
          ],
          agent: this.agent,
        });
        current = req;
        req.on('response', (res) => {
          reached(false);
          const chunks: Buffer[] = [];
          let kept = 0;
          let truncated = false;
          res.on('data', (c: Buffer) => {
            if (kept + c.length <= mirrorMaxBytes) chunks.push(c);
            else truncated = true;
            kept += c.length;
          });
          res.on('end', () =>
            finish(
              res.statusCode ?? 0,
              res.headers['content-type'],
              Buffer.concat(chunks),
              truncated || !!res.headers['content-encoding'],
            ),
          );
          res.on('error', failed);
          res.on('aborted', failed);
        });
        req.on('error', (e: NodeJS.ErrnoException) => {
          // A kept-alive connection the shadow closed as the copy went out: sent again, once.
          if (n === 0 && req.reusedSocket && isReset(e) && !finished) attempt(1);
          else {
            if (e.code !== undefined && refusal.has(e.code)) reached(true);
            failed();
          }
        });
        req.end(request.body);
      };
      const timer = setTimeout(() => cancel(`no answer within ${config.timeoutMs} ms`), config.timeoutMs);
      attempt(0);
    });
    const copy: Copy = { cancel: (why) => cancel(why), done };
    this.copies.add(copy);
    void done.finally(() => this.copies.delete(copy));
    return done;
  }
}
