import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startHealthServer, type HealthServer } from './health.ts';
import { Metrics } from './metrics.ts';

const logger = pino({ level: 'silent' });
let servers: HealthServer[] = [];

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

async function start(options: { ready: () => boolean | string; metricsPort?: number; metrics?: Metrics }) {
  const server = await startHealthServer({
    port: 0,
    host: '127.0.0.1',
    metrics: options.metrics ?? new Metrics(),
    ready: options.ready,
    metricsPort: options.metricsPort,
    logger,
  });
  servers.push(server);
  return server;
}

async function get(port: number, path: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

describe('the health server', () => {
  it('serves /healthz, /readyz and /metrics on one port', async () => {
    let ready: boolean | string = false;
    const metrics = new Metrics();
    const server = await start({ ready: () => ready, metrics });
    expect(server.port).toBeGreaterThan(0);
    expect(server.metricsPort).toBeUndefined();
    expect(await get(server.port, '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    expect(await get(server.port, '/readyz')).toMatchObject({ status: 503, body: 'not ready\n' });
    ready = 'caches not synced';
    expect(await get(server.port, '/readyz')).toMatchObject({ status: 503, body: 'not ready: caches not synced\n' });
    ready = true;
    expect(await get(server.port, '/readyz')).toMatchObject({ status: 200 });
    metrics.reconcileTotal.inc({ result: 'success' });
    metrics.reconcileTotal.inc({ result: 'error' });
    metrics.reconcileErrors.inc();
    metrics.reconcileDuration.observe(0.02);
    metrics.reconcileDuration.observe(0.5);
    metrics.apiWrites.inc({ verb: 'apply', resource: 'deployments' });
    metrics.workqueueDepth.set(3);
    metrics.leader.set(1);
    const scrape = await get(server.port, '/metrics');
    expect(scrape.status).toBe(200);
    expect(scrape.type).toMatch(/^text\/plain/);
    for (const line of [
      'ml_operator_reconcile_total{result="success"} 1',
      'ml_operator_reconcile_total{result="error"} 1',
      'ml_operator_reconcile_total{result="requeue"} 0',
      'ml_operator_reconcile_errors_total 1',
      'ml_operator_reconcile_duration_seconds_count 2',
      'ml_operator_workqueue_depth 3',
      'ml_operator_workqueue_adds_total 0',
      'ml_operator_api_writes_total{verb="apply",resource="deployments"} 1',
      'ml_operator_leader 1',
    ]) {
      expect(scrape.body).toContain(`${line}\n`);
    }
    expect(scrape.body).toContain('process_cpu_user_seconds_total');
    expect(await get(server.port, '/nope')).toMatchObject({ status: 404 });
  });

  it('serves /metrics on a port of its own when asked', async () => {
    const server = await start({ ready: () => true, metricsPort: 0 });
    expect(server.metricsPort).toBeGreaterThan(0);
    expect(server.metricsPort).not.toBe(server.port);
    expect((await get(server.metricsPort!, '/metrics')).status).toBe(200);
    expect((await get(server.metricsPort!, '/healthz')).status).toBe(404);
    expect((await get(server.port, '/metrics')).status).toBe(404);
    expect((await get(server.port, '/healthz')).status).toBe(200);
  });

  it('reports a readiness check that throws as not ready', async () => {
    const server = await start({
      ready: () => {
        throw new Error('bug');
      },
    });
    expect(await get(server.port, '/readyz')).toMatchObject({
      status: 503,
      body: 'not ready: readiness check failed: bug\n',
    });
  });

  it('closes although clients keep connections alive', async () => {
    const server = await start({ ready: () => true });
    await get(server.port, '/healthz');
    await server.close();
    servers = [];
    await expect(fetch(`http://127.0.0.1:${server.port}/healthz`)).rejects.toThrow();
  });
});
