// Helpers for tests that send real requests: the cluster's gateway, releases of the chart with the
// Gateway API provider, model artifacts on the artifact server, and load through the gateway.
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { installChart, type Release } from '../../ci/cluster/operator.ts';
import {
  binomialInterval,
  describeReport,
  startLoad,
  type LoadOptions,
  type LoadReport,
  type LoadRun,
  type Sample,
} from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import { admin, artifact, k8s } from './ml.ts';

export { artifact };
export { backendsOf, expectServed, maxExtraMs } from './served.ts';

export const gateway = () => inject('gateway');

export type RoutingMode = 'shared' | 'perEndpoint';

/**
 * Installs a release of the chart whose controller watches only the given namespaces (so the release
 * gets Roles there, and cluster-wide only the nodes list of the capacity check), with more values.
 */
export async function installRelease(
  namespace: string | string[],
  values: string[],
  prefix = 'rel',
): Promise<Release & { values: string[] }> {
  const watched = Array.isArray(namespace) ? namespace : [namespace];
  const release = { name: `${prefix}-${randomBytes(3).toString('hex')}`, namespace: `${watched[0]}-release` };
  const all = [
    'crds.enabled=false',
    'namespace.create=false',
    'rbac.aggregateClusterRoles=false',
    `global.watchNamespaces={${watched.join(',')}}`,
    ...values,
  ];
  await installChart(inject('kubeconfigPath'), all, release);
  return { ...release, values: all };
}

/**
 * Installs a release of the chart whose controller routes with the Gateway API provider: attached to
 * the cluster's shared Gateway, or with a Gateway of Traefik's class per endpoint.
 */
export async function installGatewayRelease(
  namespace: string | string[],
  mode: RoutingMode,
  extra: string[] = [],
): Promise<Release & { values: string[] }> {
  const g = gateway();
  const routing =
    mode === 'shared'
      ? [
          `controller.config.routing.gatewayAPI.sharedGateway.name=${g.shared.name}`,
          `controller.config.routing.gatewayAPI.sharedGateway.namespace=${g.shared.namespace}`,
          `controller.config.routing.gatewayAPI.sharedGateway.sectionName=${g.shared.sectionName}`,
        ]
      : [`controller.config.routing.gatewayAPI.gatewayClassName=${g.className}`];
  return installRelease(namespace, ['controller.config.routing.provider=gatewayAPI', ...routing, ...extra], 'gw');
}

export async function uninstallRelease(release: Release): Promise<void> {
  await admin.makeApiClient(k8s.CoreV1Api).deleteNamespace({ name: release.namespace });
}

/** Load through the gateway to a host; bounded by the given count and time. */
export function load(host: string, o: Omit<LoadOptions, 'url' | 'host'> & { path?: string }): LoadRun {
  const g = gateway();
  return startLoad({ ...o, url: `http://${g.address}:${g.port}${o.path ?? '/predict'}`, host });
}

/**
 * Waits until the gateway routes `host` to a model server. A gateway reports a route accepted when it
 * builds its configuration and serves it a moment later (Traefik: within its 2 s reload throttle).
 */
export async function waitForGateway(host: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(`the gateway to route ${host}`, timeoutMs, async () => {
    const probe = load(host, { requests: 1, concurrency: 1, maxDurationMs: 5000 });
    await probe.done;
    return probe.samples[0].status === 200 && probe.samples[0].backend ? true : undefined;
  });
}

export function printReport(what: string, r: LoadReport): void {
  process.stdout.write(`[traffic] ${what}: ${describeReport(r)}\n`);
}

/** Asserts-ready data: the observed share of `instance` and the 99.9% binomial interval around `expected`. */
export function share(
  samples: readonly Sample[],
  instance: string,
  expected: number,
): { observed: number; interval: [number, number]; n: number } {
  const answered = samples.filter((s) => s.status === 200 && s.backend);
  const hits = answered.filter((s) => s.backend!.instance === instance).length;
  return {
    observed: hits / answered.length,
    interval: binomialInterval(expected, answered.length),
    n: answered.length,
  };
}
