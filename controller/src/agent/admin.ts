// The admin port: readiness (the model's, passed through, and not while draining), Prometheus metrics
// and the capture and shadow status the controller reads. Never proxied; the data port never serves these.
import * as http from 'node:http';
import type { Capture } from './capture.ts';
import type { AgentMetrics } from './metrics.ts';
import type { Shadows } from './shadow.ts';

export interface AdminOptions {
  model: URL;
  modelReadyPath: string;
  capture: Capture;
  shadows: Shadows;
  metrics: AgentMetrics;
  draining: () => boolean;
  /** How long the model's readiness path may take. */
  readyTimeoutMs?: number;
}

/** The status of GET <model><readyPath>, or the error that kept it from answering. */
function modelReady(url: URL, timeoutMs: number): Promise<{ ready: boolean; detail: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      const ok = (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300;
      resolve({ ready: ok, detail: `the model answered ${res.statusCode} on ${url.pathname}` });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) =>
      resolve({ ready: false, detail: `the model did not answer on ${url.pathname}: ${e.message}` }),
    );
  });
}

export function createAdmin({
  model,
  modelReadyPath,
  capture,
  shadows,
  metrics,
  draining,
  readyTimeoutMs = 2000,
}: AdminOptions): http.Server {
  const readyUrl = new URL(model.pathname.replace(/\/+$/, '') + modelReadyPath, model);
  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = `${JSON.stringify(body)}\n`;
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const [path, search = ''] = (req.url ?? '/').split('?');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: 'only GET' });
      return;
    }
    if (path === '/-/agent/ready') {
      if (draining()) {
        json(res, 503, { ready: false, reason: 'the agent is draining (SIGTERM)' });
        return;
      }
      const r = await modelReady(readyUrl, readyTimeoutMs);
      json(res, r.ready ? 200 : 503, { ready: r.ready, reason: r.detail });
      return;
    }
    if (path === '/-/agent/status') {
      // The clients' requests over the window the caller asks for (a check's interval), 60 s by default.
      const window = Number(new URLSearchParams(search).get('window') ?? 60);
      json(res, 200, { capture: capture.status(), shadows: shadows.status(), requests: metrics.clients.read(window) });
      return;
    }
    if (path === '/-/agent/metrics') {
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(text);
      return;
    }
    json(res, 404, {
      error: `no ${path} here: the admin port serves /-/agent/ready, /-/agent/status and /-/agent/metrics`,
    });
  };
  return http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });
}
