// The model server the local cluster runs for every container port of a model pod: it answers the
// readiness path when ready and every other request with JSON that names the pod, its model
// instance and its version, so that a client can count which backend answered. A pod's environment
// shapes its behaviour (documented in docs/local-cluster.md):
//   DEMO_LATENCY_MS=50 or 20-80   added latency per answer (fixed, or uniform in a range)
//   DEMO_ERROR_RATE=0.3           that share of answers is a 500
//   DEMO_READY=false              the readiness path never answers 200 (the pod never becomes Ready)
//   DEMO_READY_DELAY_SECONDS=5    the readiness path answers 503 for that long after start
// A request may ask for its own duration with the header `x-demo-sleep-ms: 2000`.
// stop() closes the listener and cuts every open connection at once, as a server that is killed.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
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

export interface BehaviourSettings {
  latencyMs: [number, number];
  errorRate: number;
  ready: boolean;
  readyDelayMs: number;
}

/** Reads the DEMO_* settings; a bad value is an error naming the variable, as a server's config check would be. */
export function behaviour(env: Record<string, string>): BehaviourSettings {
  const latency = env.DEMO_LATENCY_MS?.trim();
  let latencyMs: [number, number] = [0, 0];
  if (latency) {
    const m = latency.match(/^(\d+)(?:-(\d+))?$/);
    if (!m || (m[2] !== undefined && Number(m[2]) < Number(m[1]))) throw new Error(`DEMO_LATENCY_MS=${latency}: expected milliseconds (50) or a range (20-80)`);
    latencyMs = [Number(m[1]), Number(m[2] ?? m[1])];
  }
  const rate = env.DEMO_ERROR_RATE?.trim();
  const errorRate = rate ? Number(rate) : 0;
  if (rate && (!Number.isFinite(errorRate) || errorRate < 0 || errorRate > 1)) throw new Error(`DEMO_ERROR_RATE=${rate}: expected a fraction between 0 and 1`);
  const ready = env.DEMO_READY?.trim();
  if (ready && ready !== 'true' && ready !== 'false') throw new Error(`DEMO_READY=${ready}: expected true or false`);
  const readyDelay = env.DEMO_READY_DELAY_SECONDS?.trim();
  const readyDelayMs = readyDelay ? Number(readyDelay) * 1000 : 0;
  if (readyDelay && !(readyDelayMs >= 0)) throw new Error(`DEMO_READY_DELAY_SECONDS=${readyDelay}: expected seconds >= 0`);
  return { latencyMs, errorRate, ready: ready !== 'false', readyDelayMs };
}

function artifactOf(modelDir: string | undefined): unknown {
  if (!modelDir) return undefined;
  try {
    const marker = JSON.parse(readFileSync(join(modelDir, '.ml-operator-artifact'), 'utf8')) as { uri: string; sha256: string | null };
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
    const path = (req.url ?? '/').split('?')[0];
    const probe = path === this.options.readinessPath && req.method === 'GET' && !req.headers['x-demo-sleep-ms'];
    const send = (status: number, body: unknown) => {
      if (res.destroyed) return;
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      if (!probe) this.options.onAnswer?.(status);
    };
    // Drain the body (a prediction request carries one) before answering.
    for await (const _ of req) void _;
    if (probe) {
      if (this.isReady()) send(200, { status: 'ready' });
      else send(503, { status: 'not ready' });
      return;
    }
    const [low, high] = this.settings.latencyMs;
    const asked = Number(req.headers['x-demo-sleep-ms'] ?? 0);
    const wait = (Number.isFinite(asked) && asked > 0 ? Math.min(asked, 60_000) : 0) + low + Math.random() * (high - low);
    if (wait > 0) await delay(wait);
    const { identity } = this.options;
    const body = { ...identity, method: req.method, path, ...(this.artifact ? { artifact: this.artifact } : {}) };
    if (this.settings.errorRate > 0 && Math.random() < this.settings.errorRate) {
      send(500, { ...body, error: `injected failure (DEMO_ERROR_RATE=${this.settings.errorRate})` });
      return;
    }
    send(200, body);
  }
}
