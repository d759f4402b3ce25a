// /healthz, /readyz and /metrics over plain HTTP, for the kubelet's probes and Prometheus. Metrics
// may be served on a port of their own.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';

export interface HealthServerOptions {
  port: number;
  host?: string;
  /** Serve /metrics on this port instead (0: any free port); unset or equal to `port`: on `port`. */
  metricsPort?: number;
  metrics: Metrics;
  /** true when ready; false, or a string saying why, when not. */
  ready: () => boolean | string;
  logger: Logger;
}

export interface HealthServer {
  readonly port: number;
  /** Set when /metrics has a port of its own. */
  readonly metricsPort?: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function listen(server: Server, port: number, host: string | undefined): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Prometheus and the kubelet keep connections alive; do not wait for them to go idle.
    server.closeAllConnections();
  });
}

export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { metrics, ready, logger } = options;
  const separateMetrics =
    options.metricsPort !== undefined && !(options.metricsPort === options.port && options.port !== 0);

  const serveMetrics = async (res: ServerResponse) => {
    try {
      send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
    } catch (err) {
      logger.error({ err }, 'could not collect metrics');
      send(res, 500, 'could not collect metrics\n');
    }
  };
  const serveReady = (res: ServerResponse) => {
    let state: boolean | string;
    try {
      state = ready();
    } catch (err) {
      state = `readiness check failed: ${(err as Error).message}`;
    }
    if (state === true) send(res, 200, 'ok\n');
    else send(res, 503, `not ready${typeof state === 'string' ? `: ${state}` : ''}\n`);
  };
  const route = (probes: boolean, withMetrics: boolean) => (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'method not allowed\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (probes && path === '/healthz') {
      send(res, 200, 'ok\n');
      return;
    }
    if (probes && path === '/readyz') {
      serveReady(res);
      return;
    }
    if (withMetrics && path === '/metrics') return void serveMetrics(res);
    send(res, 404, 'not found\n');
  };

  const health = createServer(route(true, !separateMetrics));
  const metricsServer = separateMetrics ? createServer(route(false, true)) : undefined;
  const port = await listen(health, options.port, options.host);
  let metricsPort: number | undefined;
  if (metricsServer) {
    try {
      metricsPort = await listen(metricsServer, options.metricsPort!, options.host);
    } catch (err) {
      await close(health);
      throw err;
    }
  }
  return {
    port,
    metricsPort,
    async close() {
      await Promise.all([close(health), ...(metricsServer ? [close(metricsServer)] : [])]);
    },
  };
}
