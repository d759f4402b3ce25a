// The model server the local cluster runs for every container port of a model pod: it answers the
// readiness path when ready and every other request with JSON that names the pod, its model
// instance and its version, so that a client can count which backend answered. A pod's environment
// shapes its behaviour (documented in docs/local-cluster.md):
//   DEMO_LATENCY_MS=50 or 20-80   added latency per answer (fixed, or uniform in a range)
//   DEMO_ERROR_RATE=0.3           that share of answers is a 500
//   DEMO_READY=false              the readiness path never answers 200 (the pod never becomes Ready)
//   DEMO_READY_DELAY_SECONDS=5    the readiness path answers 503 for that long after start
//   DEMO_STALL_MS=3000            a cold start: every request that arrives within DEMO_STALL_SECONDS
//   DEMO_STALL_SECONDS=10         (default 10) of the first one waits that long before its answer
//   DEMO_FAULT=reset|hang|crash|wrong   how a failing answer fails (below), for DEMO_FAULT_RATE of
//   DEMO_FAULT_RATE=0.2                 the requests (default 1: all of them)
// The faults: `reset` drops the connection with a TCP reset instead of answering, `hang` never
// answers (the connection stays open), `crash` sends the status, the headers and half the body, then
// cuts the connection (a process that dies mid-answer), `wrong` answers 200 naming another model's
// instance and version (a server that loaded the wrong model).
// A request may ask for its own duration with the header `x-demo-sleep-ms: 2000`, and for a fault
// with `x-demo-fault: reset` (or hang, crash, wrong).
// stop() closes the listener and cuts every open connection at once, as a server that is killed.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';

/** Now, in ms since the epoch, finer than Date.now(). */
const epochMs = () => performance.timeOrigin + performance.now();
import { setTimeout as delay } from 'node:timers/promises';

export interface ModelServerIdentity {
  pod: string;
  namespace: string;
  node: string;
  container: string;
  image: string;
  /** Labels the controller puts on model pods. */
  model?: string;
  instance?: string;
  version?: string;
}

export interface ModelServerOptions {
  identity: ModelServerIdentity;
  address: string;
  port: number;
  readinessPath: string;
  env: Record<string, string>;
  /** The pod's model volume (MODEL_PATH), when it has one. */
  modelDir?: string;
  /** Called for each answer to a request (not to the readiness probe), for the runtime's metrics. */
  onAnswer?: (status: number) => void;
}

export const faults = ['reset', 'hang', 'crash', 'wrong'] as const;
export type Fault = (typeof faults)[number];

export interface BehaviourSettings {
  latencyMs: [number, number];
  errorRate: number;
  ready: boolean;
  readyDelayMs: number;
  /** Added to each request that arrives within `stallWindowMs` of the first one (a cold start). */
  stallMs: number;
  stallWindowMs: number;
  fault?: Fault;
  faultRate: number;
}

const isFault = (v: string): v is Fault => (faults as readonly string[]).includes(v);

function fraction(name: string, value: string | undefined, fallback: number): number {
  const v = value?.trim();
  if (!v) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new Error(`${name}=${v}: expected a fraction between 0 and 1`);
  return n;
}

function nonNegative(name: string, value: string | undefined, unit: string, fallback: number): number {
  const v = value?.trim();
  if (!v) return fallback;
  const n = Number(v);
  if (!(n >= 0)) throw new Error(`${name}=${v}: expected ${unit} >= 0`);
  return n;
}

/** Reads the DEMO_* settings; a bad value is an error naming the variable, as a server's config check would be. */
export function behaviour(env: Record<string, string>): BehaviourSettings {
  const latency = env.DEMO_LATENCY_MS?.trim();
  let latencyMs: [number, number] = [0, 0];
  if (latency) {
    const m = latency.match(/^(\d+)(?:-(\d+))?$/);
    if (!m || (m[2] !== undefined && Number(m[2]) < Number(m[1])))
      throw new Error(`DEMO_LATENCY_MS=${latency}: expected milliseconds (50) or a range (20-80)`);
    latencyMs = [Number(m[1]), Number(m[2] ?? m[1])];
  }
  const errorRate = fraction('DEMO_ERROR_RATE', env.DEMO_ERROR_RATE, 0);
  const ready = env.DEMO_READY?.trim();
  if (ready && ready !== 'true' && ready !== 'false') throw new Error(`DEMO_READY=${ready}: expected true or false`);
  const readyDelayMs = nonNegative('DEMO_READY_DELAY_SECONDS', env.DEMO_READY_DELAY_SECONDS, 'seconds', 0) * 1000;
  const stallMs = nonNegative('DEMO_STALL_MS', env.DEMO_STALL_MS, 'milliseconds', 0);
  const stallWindowMs = nonNegative('DEMO_STALL_SECONDS', env.DEMO_STALL_SECONDS, 'seconds', 10) * 1000;
  const fault = env.DEMO_FAULT?.trim() || undefined;
  if (fault !== undefined && !isFault(fault))
    throw new Error(`DEMO_FAULT=${fault}: expected one of ${faults.join(', ')}`);
  const faultRate = fraction('DEMO_FAULT_RATE', env.DEMO_FAULT_RATE, 1);
  return { latencyMs, errorRate, ready: ready !== 'false', readyDelayMs, stallMs, stallWindowMs, fault, faultRate };
}

function artifactOf(modelDir: string | undefined): unknown {
  if (!modelDir) return undefined;
  try {
    const marker = JSON.parse(readFileSync(join(modelDir, '.ml-operator-artifact'), 'utf8')) as {
      uri: string;
      sha256: string | null;
    };
    return { uri: marker.uri, sha256: marker.sha256 };
  } catch {
    return undefined;
  }
}

export class ModelServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly settings: BehaviourSettings;
  private readonly started = Date.now();
  private readonly options: ModelServerOptions;
  private readonly artifact: unknown;
  /** When the first request (not a readiness probe) arrived: the start of a cold start's stall. */
  private firstRequestAt: number | undefined;

  constructor(options: ModelServerOptions) {
    this.options = options;
    this.settings = behaviour(options.env);
    this.artifact = artifactOf(options.modelDir);
    this.server = createServer((req, res) => void this.answer(req, res));
    this.server.keepAliveTimeout = 30_000;
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.address, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops at once: the listener closes and every open connection is cut, mid-request or not. */
  stop(): void {
    this.server.close();
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  private isReady(): boolean {
    return this.settings.ready && Date.now() - this.started >= this.settings.readyDelayMs;
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // When the request reached this server and when it answered (ms since the epoch), so that a
    // client can tell time lost before the server (gateway, proxy) from time spent in it.
    const receivedAt = epochMs();
    const path = (req.url ?? '/').split('?')[0];
    const probe = path === this.options.readinessPath && req.method === 'GET' && !req.headers['x-demo-sleep-ms'];
    const send = (status: number, body: unknown) => {
      if (res.destroyed) return;
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        'x-model-received-at': receivedAt.toFixed(1),
        'x-model-answered-at': epochMs().toFixed(1),
      });
      res.end(text);
      if (!probe) this.options.onAnswer?.(status);
    };
    // Drain the body (a prediction request carries one) before answering.
    for await (const _ of req as AsyncIterable<Buffer>) continue;
    if (probe) {
      if (this.isReady()) send(200, { status: 'ready' });
      else send(503, { status: 'not ready' });
      return;
    }
    const [low, high] = this.settings.latencyMs;
    const asked = Number(req.headers['x-demo-sleep-ms'] ?? 0);
    this.firstRequestAt ??= Date.now();
    const stall = Date.now() - this.firstRequestAt < this.settings.stallWindowMs ? this.settings.stallMs : 0;
    const wait =
      (Number.isFinite(asked) && asked > 0 ? Math.min(asked, 60_000) : 0) + low + Math.random() * (high - low) + stall;
    if (wait > 0) await delay(wait);
    const { identity } = this.options;
    const body = { ...identity, method: req.method, path, ...(this.artifact ? { artifact: this.artifact } : {}) };
    const fault = this.faultOf(req);
    if (fault) {
      this.fail(fault, req, res, body);
      return;
    }
    if (this.settings.errorRate > 0 && Math.random() < this.settings.errorRate) {
      send(500, { ...body, error: `injected failure (DEMO_ERROR_RATE=${this.settings.errorRate})` });
      return;
    }
    send(200, body);
  }

  private faultOf(req: IncomingMessage): Fault | undefined {
    const asked = req.headers['x-demo-fault'];
    if (typeof asked === 'string' && isFault(asked)) return asked;
    const { fault, faultRate } = this.settings;
    return fault && Math.random() < faultRate ? fault : undefined;
  }

  private fail(fault: Fault, req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>): void {
    switch (fault) {
      case 'reset':
        req.socket.resetAndDestroy();
        return;
      case 'hang':
        // Never answers: the connection stays open until the client gives up or the server stops.
        return;
      case 'crash': {
        const text = JSON.stringify(body);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.write(text.slice(0, text.length >> 1), () => req.socket.destroy());
        return;
      }
      case 'wrong': {
        const { identity } = this.options;
        const text = JSON.stringify({
          ...body,
          model: 'another-model',
          instance: `another-model-${identity.version ?? 'v0'}`,
          version: 'another-version',
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        this.options.onAnswer?.(200);
      }
    }
  }
}
