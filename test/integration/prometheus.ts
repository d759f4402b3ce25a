// Helpers for tests of the metric gates, around the local cluster's real Prometheus: queries, a TCP
// path to it that a test can cut (Prometheus unreachable from the controller), and a metrics
// endpoint that serves series of the shape Istio's proxies emit (Envoy cannot run here), registered
// with Prometheus as a scrape target.
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, connect, type Socket } from 'node:net';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';
import { waitFor } from '../../ci/wait.ts';

export const prometheus = () => inject('prometheus');

export interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query against the cluster's Prometheus; throws on a query error. */
export async function query(expr: string): Promise<Series[]> {
  const res = await fetch(`${prometheus().url}/api/v1/query`, {
    method: 'POST',
    body: new URLSearchParams({ query: expr }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json()) as {
    status: string;
    error?: string;
    data?: { resultType: string; result: Series[] };
  };
  if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
  return body.data!.resultType === 'vector' ? body.data!.result : [];
}

export interface CuttablePath {
  /** http://<address>:<port>, reachable from the cluster's network namespace. */
  url: string;
  /** Refuses new connections and resets open ones. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** A TCP path to Prometheus on the host side of the cluster's network, which a test can cut. */
export async function cuttablePathToPrometheus(): Promise<CuttablePath> {
  const target = new URL(prometheus().url);
  const sockets = new Set<Socket>();
  let open = true;
  const server = createTcpServer((client) => {
    if (!open) return client.resetAndDestroy();
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  const address = inject('network').hostAddress;
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://${address}:${port}`,
    cut() {
      open = false;
      for (const s of sockets) s.resetAndDestroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Request counts and durations per destination Service, as Istio's proxies report them at the destination. */
export interface IstioExporter {
  /** Adds `count` requests to a Service with a status code, each lasting `ms`. */
  record(namespace: string, service: string, code: number, count: number, ms: number): void;
  close(): Promise<void>;
}

/** Istio's default buckets of istio_request_duration_milliseconds. */
const istioBuckets = [
  1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
];

/**
 * Serves istio_requests_total and istio_request_duration_milliseconds with the labels Istio's
 * standard metrics carry (reporter, destination_service_name/namespace, response_code, ...), and has
 * the cluster's Prometheus scrape it through a file_sd target.
 */
export async function startIstioExporter(): Promise<IstioExporter> {
  const requests = new Map<string, { labels: Record<string, string>; count: number }>();
  const durations = new Map<
    string,
    { labels: Record<string, string>; buckets: number[]; sum: number; count: number }
  >();
  const labelsOf = (namespace: string, service: string, code?: number) => ({
    reporter: 'destination',
    source_workload: 'istio-ingressgateway',
    source_workload_namespace: 'istio-system',
    destination_service: `${service}.${namespace}.svc.cluster.local`,
    destination_service_name: service,
    destination_service_namespace: namespace,
    destination_workload: service,
    destination_workload_namespace: namespace,
    request_protocol: 'http',
    ...(code !== undefined ? { response_code: String(code) } : {}),
    connection_security_policy: 'unknown',
  });
  const text = (labels: Record<string, string>) =>
    `{${Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .join(',')}}`;
  const server: Server = createHttpServer((req, res) => {
    const lines = ['# TYPE istio_requests_total counter'];
    for (const r of requests.values()) lines.push(`istio_requests_total${text(r.labels)} ${r.count}`);
    lines.push('# TYPE istio_request_duration_milliseconds histogram');
    for (const d of durations.values()) {
      istioBuckets.forEach((le, i) =>
        lines.push(
          `istio_request_duration_milliseconds_bucket${text({ ...d.labels, le: String(le) })} ${d.buckets[i]}`,
        ),
      );
      lines.push(`istio_request_duration_milliseconds_bucket${text({ ...d.labels, le: '+Inf' })} ${d.count}`);
      lines.push(`istio_request_duration_milliseconds_sum${text(d.labels)} ${d.sum}`);
      lines.push(`istio_request_duration_milliseconds_count${text(d.labels)} ${d.count}`);
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(`${lines.join('\n')}\n`);
  });
  const address = inject('network').hostAddress;
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  const port = (server.address() as { port: number }).port;
  const file = join(prometheus().targetsDir, `istio-${randomBytes(4).toString('hex')}.json`);
  writeFileSync(file, JSON.stringify([{ targets: [`${address}:${port}`], labels: { job: 'istio-proxies' } }]));
  await waitFor('Prometheus to scrape the Istio-shaped metrics', 30_000, async () =>
    (await query(`up{instance="${address}:${port}"}`))[0]?.value[1] === '1' ? true : undefined,
  );
  return {
    record(namespace, service, code, count, ms) {
      const rl = labelsOf(namespace, service, code);
      const rk = JSON.stringify(rl);
      requests.set(rk, { labels: rl, count: (requests.get(rk)?.count ?? 0) + count });
      const dl = labelsOf(namespace, service, code);
      const dk = JSON.stringify(dl);
      const d = durations.get(dk) ?? { labels: dl, buckets: istioBuckets.map(() => 0), sum: 0, count: 0 };
      istioBuckets.forEach((le, i) => (d.buckets[i] += ms <= le ? count : 0));
      d.sum += ms * count;
      d.count += count;
      durations.set(dk, d);
    },
    close: () =>
      new Promise((resolve) => {
        rmSync(file, { force: true });
        server.close(() => resolve());
      }),
  };
}
