// What istiod programs an Istio ingress gateway with, read over xDS by ci/tools/istiod/xds-reader
// (connected as the gateway's proxy: a router node in istio-system labelled istio: ingressgateway),
// and what it should be for an endpoint, from the endpoint's own status and the cluster's pods.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { toolPath } from '../../ci/tools/build.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { admin, k8s } from './ml.ts';

/** The parts of Envoy's resources (JSON, Envoy's field names) the checks read. */
interface SocketAddress {
  socket_address?: { address?: string; port_value?: number };
}
interface Listener {
  name: string;
  address?: SocketAddress;
  filter_chains?: {
    filter_chain_match?: { server_names?: string[] };
    filters?: { name: string; typed_config?: { rds?: { route_config_name?: string } } }[];
    transport_socket?: {
      name: string;
      typed_config?: { common_tls_context?: { tls_certificate_sds_secret_configs?: { name: string }[] } };
    };
  }[];
}
interface EnvoyRoute {
  name?: string;
  match?: { prefix?: string; headers?: { name: string; string_match?: { exact?: string } }[] };
  route?: {
    cluster?: string;
    weighted_clusters?: { clusters: { name: string; weight?: number }[] };
    request_mirror_policies?: {
      cluster: string;
      runtime_fraction?: {
        default_value?: { numerator?: number; denominator?: 'HUNDRED' | 'TEN_THOUSAND' | 'MILLION' };
      };
    }[];
  };
}
interface RouteConfiguration {
  name: string;
  virtual_hosts?: { name: string; domains: string[]; routes?: EnvoyRoute[] }[];
}
interface ClusterLoadAssignment {
  cluster_name: string;
  endpoints?: { lb_endpoints?: { endpoint?: { address?: SocketAddress }; health_status?: string }[] }[];
}

export interface XdsSnapshot {
  listeners: Listener[];
  routes: RouteConfiguration[];
  clusters: { name: string }[];
  endpoints: ClusterLoadAssignment[];
  /** When the last response of each type arrived (ms since the epoch, the reader's clock). */
  receivedAt: Record<'listeners' | 'routes' | 'clusters' | 'endpoints', number>;
}

/** A route as the checks compare it: the header it matches on, its weighted clusters, its mirrors. */
export interface ProgrammedRoute {
  header?: string;
  clusters: { name: string; weight: number }[];
  mirrors: { cluster: string; percent: number }[];
}

/** What the gateway serves for a host: its routes in order, and each named cluster's endpoints. */
export interface ProgrammedHost {
  routes: ProgrammedRoute[];
  endpoints: Record<string, string[]>;
}

const denominators = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 } as const;

function summarise(r: EnvoyRoute): ProgrammedRoute {
  const header = r.match?.headers?.map((h) => `${h.name}=${h.string_match?.exact ?? '?'}`).join(',');
  const clusters =
    r.route?.weighted_clusters?.clusters.map((c) => ({ name: c.name, weight: c.weight ?? 0 })) ??
    (r.route?.cluster ? [{ name: r.route.cluster, weight: 100 }] : []);
  const mirrors = (r.route?.request_mirror_policies ?? []).map((m) => {
    const f = m.runtime_fraction?.default_value;
    return {
      cluster: m.cluster,
      percent: f ? ((f.numerator ?? 0) * 100) / denominators[f.denominator ?? 'HUNDRED'] : 100,
    };
  });
  return { ...(header ? { header } : {}), clusters, mirrors };
}

/** Addresses (ip:port) of a cluster's endpoints that Envoy would send to (not marked unhealthy). */
function endpointsOf(snapshot: XdsSnapshot, cluster: string): string[] {
  const cla = snapshot.endpoints.find((e) => e.cluster_name === cluster);
  return (cla?.endpoints ?? [])
    .flatMap((l) => l.lb_endpoints ?? [])
    .filter((e) => !e.health_status || e.health_status === 'HEALTHY' || e.health_status === 'UNKNOWN')
    .map((e) => `${e.endpoint?.address?.socket_address?.address}:${e.endpoint?.address?.socket_address?.port_value}`)
    .sort();
}

/**
 * What the gateway's listener on `port` routes for `host`: the virtual host of its route
 * configuration (RDS) whose domains name the host; undefined when there is none.
 */
export function programmedHost(snapshot: XdsSnapshot, host: string, port = 80): ProgrammedHost | undefined {
  const routeNames = snapshot.listeners
    .filter((l) => l.address?.socket_address?.port_value === port)
    .flatMap((l) => l.filter_chains ?? [])
    .flatMap((fc) => fc.filters ?? [])
    .map((f) => f.typed_config?.rds?.route_config_name)
    .filter((n): n is string => Boolean(n));
  const vhost = snapshot.routes
    .filter((r) => routeNames.includes(r.name))
    .flatMap((r) => r.virtual_hosts ?? [])
    .find((v) => v.domains.includes(host));
  if (!vhost) return undefined;
  const routes = (vhost.routes ?? []).map(summarise);
  const clusters = [
    ...new Set(routes.flatMap((r) => [...r.clusters.map((c) => c.name), ...r.mirrors.map((m) => m.cluster)])),
  ];
  return { routes, endpoints: Object.fromEntries(clusters.map((c) => [c, endpointsOf(snapshot, c)])) };
}

/**
 * The certificates (SDS secret names, e.g. kubernetes://<credentialName>) the gateway's listener on
 * `port` presents for `host` (by SNI); empty when it terminates no TLS for it.
 */
export function tlsSecretsFor(snapshot: XdsSnapshot, host: string, port = 443): string[] {
  return snapshot.listeners
    .filter((l) => l.address?.socket_address?.port_value === port)
    .flatMap((l) => l.filter_chains ?? [])
    .filter((fc) => fc.filter_chain_match?.server_names?.includes(host))
    .flatMap((fc) => fc.transport_socket?.typed_config?.common_tls_context?.tls_certificate_sds_secret_configs ?? [])
    .map((c) => c.name);
}

/** Istio's name of the outbound cluster of a Service's port. */
export const clusterOf = (namespace: string, service: string, port = 80) =>
  `outbound|${port}||${service}.${namespace}.svc.cluster.local`;

/** Ready pods' addresses (ip:port of the container port the Service's `http` port targets) of a Service. */
export async function readyAddresses(namespace: string, service: string): Promise<string[]> {
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const svc = await core.readNamespacedService({ name: service, namespace });
  const selector = Object.entries(svc.spec?.selector ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const target = svc.spec?.ports?.find((p) => p.name === 'http')?.targetPort;
  const pods = await core.listNamespacedPod({ namespace, labelSelector: selector });
  return pods.items
    .filter(
      (p) =>
        !p.metadata?.deletionTimestamp &&
        p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
        p.status.podIP,
    )
    .map((p) => {
      const port =
        typeof target === 'number'
          ? target
          : p.spec?.containers.flatMap((c) => c.ports ?? []).find((cp) => cp.name === target)?.containerPort;
      return `${p.status!.podIP}:${port}`;
    })
    .sort();
}

/**
 * What the gateway should serve for the endpoint, from its status: a route per variant of the
 * serving version for requests that name it (x-ml-variant), ahead of the split of `status.traffic`
 * (weights summed per Service, in the table's order) with the mirrors of its mirrored shadows; and
 * each of those clusters resolving to the ready pods of its Service. Nothing when it routes nothing.
 */
export async function expectedHost(e: MachineLearningEndpoint): Promise<ProgrammedHost | undefined> {
  const namespace = e.metadata.namespace!;
  const traffic = e.status?.traffic ?? [];
  if (traffic.length === 0) return undefined;
  const serving = e.status?.endpointConfigVersion;
  const targets = traffic.filter((t) => t.version === serving || t.version === undefined);
  const split = new Map<string, number>();
  for (const t of traffic) split.set(t.service, (split.get(t.service) ?? 0) + t.weight);
  const mirrors = (e.status?.shadows ?? [])
    .filter((s) => s.mirrored)
    .map((s) => ({ cluster: clusterOf(namespace, s.service), percent: s.percent }));
  const routes: ProgrammedRoute[] = [
    ...[...new Map(targets.map((t) => [t.variant, t.service]))].map(([variant, service]) => ({
      header: `x-ml-variant=${variant}`,
      clusters: [{ name: clusterOf(namespace, service), weight: 100 }],
      mirrors: [],
    })),
    {
      clusters: [...split]
        .filter(([, w]) => w > 0)
        .map(([service, weight]) => ({ name: clusterOf(namespace, service), weight })),
      mirrors,
    },
  ];
  const services = [
    ...new Set([
      ...traffic.map((t) => t.service),
      ...(e.status?.shadows ?? []).filter((s) => s.mirrored).map((s) => s.service),
    ]),
  ];
  const endpoints: Record<string, string[]> = {};
  for (const s of services) endpoints[clusterOf(namespace, s)] = await readyAddresses(namespace, s);
  return { routes, endpoints };
}

/** The programmed host in a stable order for comparison (endpoints by cluster name). */
function canonical(h: ProgrammedHost | undefined): string {
  if (!h) return 'nothing';
  return JSON.stringify(
    {
      routes: h.routes,
      endpoints: Object.fromEntries(Object.entries(h.endpoints).sort(([a], [b]) => a.localeCompare(b))),
    },
    null,
    2,
  );
}

/**
 * xds-reader in watch mode: a stream connected as the ingress gateway's proxy, the latest snapshot
 * kept, each one timestamped when its last response arrived.
 */
export class XdsWatch {
  private child: ChildProcess;
  private stderr = '';
  latest?: XdsSnapshot;
  private listeners = new Set<(s: XdsSnapshot) => void>();

  constructor(xdsAddress: string) {
    // 50 ms of quiet closes a snapshot: istiod sends the types of one push back to back.
    this.child = spawn(toolPath('xds-reader'), [`--xds=${xdsAddress}`, '--watch', '--quiet=50ms'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString()).slice(-4000)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const snapshot = JSON.parse(line) as XdsSnapshot;
      this.latest = snapshot;
      for (const l of this.listeners) l(snapshot);
    });
  }

  /** Calls `listener` with every snapshot from now on, until the returned function is called. */
  onSnapshot(listener: (s: XdsSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Waits until what the gateway is programmed with for `host` is what the endpoint's status says
   * (or nothing, for `undefined`); fails with both printed.
   */
  async programs(
    host: string,
    expected: () => Promise<ProgrammedHost | undefined>,
    what: string,
    timeoutMs = 20_000,
    port = 80,
  ): Promise<ProgrammedHost | undefined> {
    let want = 'nothing';
    let got = 'nothing';
    await waitFor(
      `istiod to program ${what} for ${host}`,
      timeoutMs,
      async () => {
        if (this.child.exitCode !== null) throw new Error(`xds-reader exited (${this.child.exitCode}): ${this.stderr}`);
        if (!this.latest) return undefined;
        want = canonical(await expected());
        got = canonical(programmedHost(this.latest, host, port));
        return want === got ? true : undefined;
      },
      () => `expected:\n${want}\nreceived from istiod:\n${got}\nxds-reader: ${this.stderr}`,
    );
    return programmedHost(this.latest!, host, port);
  }

  close(): void {
    this.child.kill('SIGTERM');
  }
}

/** One snapshot: xds-reader connects, takes what istiod sends, prints it and exits. */
export function readXds(xdsAddress: string, extra: string[] = []): Promise<XdsSnapshot> {
  return new Promise((resolve, reject) => {
    const child = spawn(toolPath('xds-reader'), [`--xds=${xdsAddress}`, ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as XdsSnapshot)
        : reject(new Error(`xds-reader exited with ${code}: ${err}`)),
    );
  });
}
