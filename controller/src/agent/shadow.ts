// Shadows mirrored by the agent: for `percent` of the requests, once the client has its whole answer,
// a copy of the request goes to the shadow's Service, and the two answers are compared (compare/).
// The client never waits for a shadow: the copy leaves after its answer ended, over connections of
// its own, with a timeout of its own and at most maxInFlight copies at a time; a request past that
// cap, or with a body larger than the agent keeps, is not mirrored and is counted.
import * as http from 'node:http';
import { compareAnswers, comparer, type Comparer } from '../compare/compare.ts';
import type { Answer } from '../compare/prediction.ts';
import { ComparisonStatistics, type ComparisonFigures, type TallyData } from '../compare/statistics.ts';
import type { ShadowConfig } from './config.ts';
import type { AgentMetrics } from './metrics.ts';

/** The largest request body (and answer) kept for a copy; a larger request is not mirrored. */
export const mirrorMaxBytes = 1 << 20;

/** What a request carries to its shadows: all of it, kept while it streamed to the model. */
export interface MirroredRequest {
  method: string;
  /** Path and query, as the client sent them. */
  path: string;
  /** End-to-end headers (name, value, ...), without Host and Content-Length. */
  headers: string[];
  body: Buffer;
}

/** A shadow's answer as recorded beside the serving one (Data Capture keeps it). */
export interface ShadowAnswer {
  shadow: string;
  answer: Answer;
  /** Whether every prediction agreed; undefined when they were not compared. */
  agreed?: boolean;
}

export interface ShadowStatus {
  name: string;
  url: string;
  percent: number;
  inFlight: number;
  /** Requests not mirrored: the in-flight cap was reached, or the body was larger than the agent keeps. */
  dropped: number;
  tooLarge: number;
  /** The figures of this pod, and the tallies the controller sums over the pods. */
  window: ComparisonFigures;
  sinceStart: ComparisonFigures;
  windowSeconds: number;
  data: { window: TallyData; sinceStart: TallyData };
}

interface Comparison {
  config: ShadowConfig;
  comparer: Comparer;
  statistics: ComparisonStatistics;
  inFlight: number;
  dropped: number;
  tooLarge: number;
}

const sameComparison = (a: ShadowConfig, b: ShadowConfig) =>
  a.url === b.url && JSON.stringify(a.compare) === JSON.stringify(b.compare);

export interface ShadowsOptions {
  metrics: AgentMetrics;
  now?: () => number;
}

export class Shadows {
  private shadows: Comparison[] = [];
  private readonly agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  private readonly pending = new Set<Promise<unknown>>();
  private readonly metrics: AgentMetrics;
  private readonly now: () => number;
  private stopped = false;

  constructor({ metrics, now = Date.now }: ShadowsOptions) {
    this.metrics = metrics;
    this.now = now;
  }

  /**
   * Applies the shadows of a (new) config. A shadow whose Service and comparison are unchanged keeps
   * its figures; one that changed starts over, so that no figure mixes two comparisons.
   */
  configure(configs: readonly ShadowConfig[]): void {
    this.shadows = configs.map((config) => {
      const kept = this.shadows.find((s) => s.config.name === config.name && sameComparison(s.config, config));
      if (kept) {
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
        tooLarge: 0,
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

  /** The shadows this request goes to, drawn once when it arrives. */
  pick(): Comparison[] {
    if (this.stopped || this.shadows.length === 0) return [];
    return this.shadows.filter((s) => s.config.percent > 0 && Math.random() * 100 < s.config.percent);
  }

  /**
   * Sends the copy to each picked shadow and compares its answer with the serving one. Never throws;
   * resolves with the shadows' answers once each has answered, failed or timed out.
   */
  mirror(
    picked: readonly Comparison[],
    request: MirroredRequest | undefined,
    serving: Answer,
  ): Promise<ShadowAnswer[]> {
    const sent: Promise<ShadowAnswer | undefined>[] = [];
    for (const s of picked) {
      const shadow = s.config.name;
      if (!request) {
        s.tooLarge++;
        this.metrics.shadowRequests.inc({ shadow, result: 'too_large' });
        continue;
      }
      if (s.inFlight >= s.config.maxInFlight) {
        s.dropped++;
        this.metrics.shadowRequests.inc({ shadow, result: 'dropped' });
        continue;
      }
      s.inFlight++;
      const p = this.send(s.config, request).then((answer) => {
        s.inFlight--;
        const outcome = compareAnswers(s.comparer, serving, answer);
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
          answer,
          agreed: outcome.compared ? outcome.agreeing === outcome.predictions : undefined,
        };
      });
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
      sent.push(p);
    }
    return Promise.all(sent).then((all) => all.filter((a): a is ShadowAnswer => a !== undefined));
  }

  status(): ShadowStatus[] {
    const now = this.now();
    return this.shadows.map((s) => ({
      name: s.config.name,
      url: s.config.url,
      percent: s.config.percent,
      inFlight: s.inFlight,
      dropped: s.dropped,
      tooLarge: s.tooLarge,
      window: s.statistics.window(now),
      sinceStart: s.statistics.sinceStart(),
      windowSeconds: s.statistics.windowMs / 1000,
      data: s.statistics.data(now),
    }));
  }

  /** SIGTERM: no new copies; waits up to `timeoutMs` for those in flight, then cuts them. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    if (this.pending.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.pending]),
        new Promise((r) => {
          timer = setTimeout(r, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.agent.destroy();
  }

  /** One copy to a shadow: its answer (status 0 when it never came: refused, reset, timed out). */
  private send(config: ShadowConfig, request: MirroredRequest): Promise<Answer> {
    const started = performance.now();
    const url = new URL(config.url);
    return new Promise<Answer>((resolve) => {
      let done = false;
      const finish = (status: number, contentType: string | undefined, body: Buffer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve({ status, contentType, body, latencyMs: performance.now() - started });
      };
      const req = http.request({
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: Number(url.port) || 80,
        method: request.method,
        path: url.pathname.replace(/\/+$/, '') + request.path,
        // Raw headers get no Host from Node: the shadow's own, as a client of its Service would send.
        headers: ['host', url.host, ...request.headers, 'content-length', String(request.body.length)],
        agent: this.agent,
      });
      const timer = setTimeout(() => {
        req.destroy(new Error(`no answer within ${config.timeoutMs} ms`));
      }, config.timeoutMs);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let kept = 0;
        res.on('data', (c: Buffer) => {
          if (kept + c.length <= mirrorMaxBytes) chunks.push(c);
          kept += c.length;
        });
        res.on('end', () => finish(res.statusCode ?? 0, res.headers['content-type'], Buffer.concat(chunks)));
        res.on('error', () => finish(0, undefined, Buffer.alloc(0)));
        res.on('aborted', () => finish(0, undefined, Buffer.alloc(0)));
      });
      req.on('error', () => finish(0, undefined, Buffer.alloc(0)));
      req.end(request.body);
    });
  }
}
