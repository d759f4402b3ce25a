// The data port: every request goes to the model in the pod, and its answer back, unchanged (status,
// reason, headers but the hop-by-hop ones, body). Bodies stream both ways; a sampled exchange keeps a
// copy of at most maxRecordBytes of each side while it streams, and is handed to Capture once the
// client has the whole answer. Connections to the model are kept alive.
//
// A model that cannot be reached gets the client a 502 that says so. One case is retried: a kept-alive
// connection that the model closed while the request was on its way (the model's idle timeout racing
// a new request), when the request body sent so far is still held (at most replayBytes).
//
// A request picked for a shadow (shadow.ts) keeps its whole body and the model's answer, each at most
// mirrorMaxBytes; once the client has that answer, the copy goes to the shadow, and a request that is
// also captured has its record written once the shadow answered, to hold both answers.
import * as http from 'node:http';
import type { Socket } from 'node:net';
import type { Log } from '../fetcher/log.ts';
import type { Capture } from './capture.ts';
import type { AgentMetrics } from './metrics.ts';
import type { CapturedBody } from './record.ts';
import { copyHeader, mirrorMaxBytes, type Shadows } from './shadow.ts';

const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);
const replayBytes = 64 * 1024;

/** Raw headers (name, value, name, value...) without the hop-by-hop ones, in their order and case. */
function endToEnd(raw: readonly string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === 'connection') for (const n of raw[i + 1].split(',')) named.add(n.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (!hopByHop.has(name) && !named.has(name)) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** The first `limit` bytes of a stream, kept while it passes. */
class Copy {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  total = 0;
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }
  add(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.kept >= this.limit) return;
    const part = this.kept + chunk.length > this.limit ? chunk.subarray(0, this.limit - this.kept) : chunk;
    // A copy: the stream may reuse the chunk's memory.
    this.chunks.push(Buffer.from(part));
    this.kept += part.length;
  }
  body(contentType: string | undefined): CapturedBody {
    return { contentType, bytes: Buffer.concat(this.chunks, this.kept), truncated: this.total > this.kept };
  }
}

const isReset = (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET' || e.message === 'socket hang up';

export interface ProxyOptions {
  model: URL;
  capture: Capture;
  shadows: Shadows;
  metrics: AgentMetrics;
  log: Log;
}

export interface Proxy {
  server: http.Server;
  /** Requests being answered now. */
  inFlight(): number;
  /** Stops taking connections; resolves once every request in flight is answered (or `timeoutMs` passed). */
  drain(timeoutMs: number): Promise<boolean>;
  close(): void;
}

// A copy carries its own Host and length; and asks for an answer that is not encoded, to compare it.
const notMirrored = new Set(['host', 'content-length', 'accept-encoding', copyHeader]);

export function createProxy({ model, capture, shadows, metrics, log }: ProxyOptions): Proxy {
  const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  const target = { host: model.hostname.replace(/^\[|\]$/g, ''), port: Number(model.port) || 80 };
  const base = model.pathname.replace(/\/+$/, '');
  let inFlight = 0;
  let draining = false;
  let idle: (() => void) | undefined;
  const sockets = new Set<Socket>();

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = performance.now();
    const time = new Date();
    inFlight++;
    metrics.inFlight.inc();
    if (draining) res.setHeader('connection', 'close');
    const sampled = capture.sample();
    const limit = capture.maxRecordBytes;
    const input = sampled ? new Copy(limit) : undefined;
    const output = sampled ? new Copy(limit) : undefined;
    // A copy from another agent is mirrored no further: its sender compares it.
    const copyOf = shadows.copyOf(header(req.headers[copyHeader]));
    const picked = copyOf === undefined ? shadows.pick() : [];
    const mirrorInput = picked.length ? new Copy(mirrorMaxBytes) : undefined;
    const mirrorOutput = picked.length ? new Copy(mirrorMaxBytes) : undefined;
    const headers = endToEnd(req.rawHeaders);
    let replay: Buffer[] | undefined = [];
    let replayed = 0;
    let requestEnded = false;
    let upstream: http.ClientRequest;
    let answered = false;
    let outputType: string | undefined;
    let outputEncoded = false;

    const fail = (e: Error) => {
      metrics.modelErrors.inc();
      if (!res.headersSent) {
        const body = `ml-operator agent: the model at ${model.origin} did not answer ${req.method} ${req.url}: ${e.message}\n`;
        outputType = 'text/plain; charset=utf-8';
        output?.add(Buffer.from(body));
        mirrorOutput?.add(Buffer.from(body));
        res.writeHead(502, { 'content-type': outputType, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      } else {
        res.destroy();
      }
      log('warn', 'model did not answer', { method: req.method, path: req.url, error: e.message });
    };

    const send = (attempt: number) => {
      const up = http.request({
        ...target,
        agent,
        method: req.method,
        path: base + (req.url ?? '/'),
        headers,
        setHost: false,
      });
      upstream = up;
      up.on('response', (answer) => {
        answered = true;
        replay = undefined;
        outputType = answer.headers['content-type'];
        outputEncoded = !!answer.headers['content-encoding'] && answer.headers['content-encoding'] !== 'identity';
        res.statusMessage = answer.statusMessage ?? '';
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.rawHeaders));
        answer.on('data', (chunk: Buffer) => {
          output?.add(chunk);
          mirrorOutput?.add(chunk);
          if (!res.write(chunk)) answer.pause();
        });
        res.on('drain', () => answer.resume());
        answer.on('end', () => res.end());
        // The model cut its answer short: so does the agent, as the client would have seen it direct.
        answer.on('aborted', () => res.destroy());
        answer.on('error', () => res.destroy());
      });
      up.on('error', (e: NodeJS.ErrnoException) => {
        if (answered || res.destroyed) return;
        if (attempt === 0 && up.reusedSocket && isReset(e) && replay) {
          resend();
          return;
        }
        fail(e);
      });
      up.on('drain', () => req.resume());
      if (replay) for (const chunk of replay) up.write(chunk);
      if (requestEnded) up.end();
    };
    const resend = () => send(1);

    req.on('data', (chunk: Buffer) => {
      input?.add(chunk);
      mirrorInput?.add(chunk);
      if (replay) {
        replayed += chunk.length;
        if (replayed <= replayBytes) replay.push(chunk);
        else replay = undefined;
      }
      if (!upstream.write(chunk)) req.pause();
    });
    req.on('end', () => {
      requestEnded = true;
      upstream.end();
    });
    res.on('close', () => {
      inFlight--;
      metrics.inFlight.dec();
      // The client went away before its answer ended: the model's work for it stops too.
      if (!res.writableFinished) upstream.destroy();
      const codeClass = res.writableFinished ? `${String(res.statusCode)[0]}xx` : 'aborted';
      const seconds = (performance.now() - started) / 1000;
      metrics.requests.inc({ code_class: codeClass });
      metrics.duration.observe({ code_class: codeClass }, seconds);
      if (copyOf === undefined) metrics.clients.record(codeClass, seconds * 1000);
      const exchange =
        input && output && res.writableFinished
          ? {
              inferenceId: header(req.headers['x-ml-inference-id']),
              ...(copyOf !== undefined ? { copyOf } : {}),
              time,
              status: res.statusCode,
              latencyMs: seconds * 1000,
              input: input.body(header(req.headers['content-type'])),
              output: output.body(outputType),
            }
          : undefined;
      const body = mirrorInput?.body(undefined);
      const served = mirrorOutput?.body(outputType);
      if (!picked.length || !body || !served || !res.writableFinished) {
        // The client went away before its whole answer: nothing to compare, nothing counted.
        if (picked.length) shadows.release(picked, false);
        if (exchange) capture.add(exchange);
      } else if (body.truncated || served.truncated || outputEncoded) {
        shadows.release(picked, true);
        if (exchange) capture.add(exchange);
      } else {
        // A captured request's record holds the shadows' answers too: it is written once they came.
        shadows.mirror(
          picked,
          {
            method: req.method ?? 'GET',
            path: req.url ?? '/',
            headers: headers.filter((_, i) => !notMirrored.has(headers[i - (i % 2)].toLowerCase())),
            body: body.bytes,
          },
          { status: res.statusCode, contentType: outputType, body: served.bytes, latencyMs: seconds * 1000 },
          exchange &&
            ((answers) =>
              capture.add({
                ...exchange,
                shadows: answers.map((a) => ({
                  variant: a.shadow,
                  status: a.status,
                  latencyMs: a.latencyMs,
                  agreed: a.agreed,
                  output: {
                    contentType: a.contentType,
                    bytes: a.body.subarray(0, limit),
                    truncated: a.truncated || a.body.length > limit,
                  },
                })),
              })),
        );
      }
      if (inFlight === 0) idle?.();
      if (draining) server.closeIdleConnections();
    });
    send(0);
  };

  const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 75_000, headersTimeout: 60_000 }, handle);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('clientError', (_e, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });

  return {
    server,
    inFlight: () => inFlight,
    async drain(timeoutMs) {
      draining = true;
      server.close();
      server.closeIdleConnections();
      if (inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          idle = resolve;
          timer = setTimeout(resolve, timeoutMs);
        });
        clearTimeout(timer);
      }
      return inFlight === 0;
    },
    close() {
      for (const s of sockets) s.destroy();
      agent.destroy();
    },
  };
}

const header = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(', ') : v);
