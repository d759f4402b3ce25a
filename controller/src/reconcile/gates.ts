// The rollout's gates that need the world: the metric gates (Prometheus), the smoke test (requests to
// the new version's pods, before it takes traffic) and the capacity check (ResourceQuotas and nodes,
// before anything of the new version is created). Each returns facts for the pure decision.
import type { AnalysisCheck, MachineLearningEndpoint, MachineLearningEndpointRollout, MachineLearningEndpointStatus } from '../api/generated.ts';
import { planFingerprint } from '../rollout/strategies.ts';
import { quantityValue } from '../desired/compare.ts';
import type { VersionPlan } from '../desired/plan.ts';
import { defaultGpuResource } from '../desired/objects.ts';
import { iso } from '../desired/status.ts';
import { KubeError, type KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/resources.ts';
import type { OperatorConfig } from '../options.ts';
import { due, dueAt, evaluate, renderQuery, type CheckRecord, type Measurement, type MetricsSource } from '../rollout/analysis.ts';
import { instanceReplicas, type RolloutInput } from '../rollout/decide.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { PrometheusClient } from '../runtime/prometheus.ts';
import type { Caches } from './caches.ts';

type Reader = Pick<KubeClient, 'get' | 'list'>;


/**
 * Evaluates the checks that are due while the new version takes traffic. The records live in
 * status.rollout.analysis; a new rollout (version or spec) starts with none.
 */
export async function runAnalysis(o: {
  status: MachineLearningEndpointStatus;
  rollout: MachineLearningEndpointRollout;
  checks: AnalysisCheck[];
  target: VersionPlan;
  serving: VersionPlan | undefined;
  namespace: string;
  endpoint: string;
  config: OperatorConfig;
  provider: 'istio' | 'gatewayAPI';
  prometheus: PrometheusClient | undefined;
  now: Date;
}): Promise<CheckRecord[] | undefined> {
  const recorded = o.status.rollout;
  if (!recorded || recorded.version !== o.target.version || recorded.plan !== planFingerprint(o.rollout)) return undefined;
  if (recorded.phase !== 'Progressing' || !recorded.weight || o.checks.length === 0) return recorded.analysis;
  const source: MetricsSource | undefined = o.config.prometheus.dataPlane || (o.provider === 'istio' ? 'istio' : undefined);
  let records = [...(recorded.analysis ?? [])];
  const ctx = {
    namespace: o.namespace,
    endpoint: o.endpoint,
    version: o.target.version,
    previousVersion: o.serving?.version ?? '',
    services: o.target.variants.map((v) => v.instance).filter((s) => !o.serving?.variants.some((v) => v.instance === s)),
    previousServices: o.serving?.variants.map((v) => v.instance) ?? [],
  };
  for (const check of due(o.checks, records, o.now, recorded.stepStartedAt)) {
    let m: Measurement;
    let query: string | undefined;
    if (!o.prometheus) m = { error: 'no Prometheus is configured: set controller.config.prometheus.url' };
    else if (check.builtin && !source) m = { error: 'built-in checks need to know whose metrics to read with the gatewayAPI provider: set controller.config.prometheus.dataPlane (istio or traefik), or give the check a query' };
    else m = await o.prometheus.query((query = renderQuery(check, source ?? 'istio', ctx)), o.now);
    const next = evaluate(check, records.find((r) => r.name === check.name), m, iso(o.now), query);
    records = [...records.filter((r) => r.name !== check.name), next];
  }
  return records.sort((a, b) => a.name.localeCompare(b.name));
}

/** When the next check is due during a step (ms from now), to come back then. */
export function nextCheckInMs(checks: AnalysisCheck[], records: CheckRecord[] | undefined, stepStartedAt: string | undefined, now: Date): number | undefined {
  if (!checks.length) return undefined;
  return Math.max(1000, Math.min(...checks.map((c) => dueAt(c, records ?? [], stepStartedAt) - now.getTime())));
}

interface SmokeRequest {
  method?: string;
  path?: string;
  body?: unknown;
  expectedStatus?: number;
  jsonPath?: string;
}

const endpointSliceResource = { group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', plural: 'endpointslices', namespaced: true } as const;
const configMapResource = { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true } as const;

/**
 * Sends the smoke test's requests to each Service of the new version that the serving one does not
 * run, straight to a ready pod of it (its EndpointSlice), before the version takes any traffic.
 */
export async function runSmokeTest(client: Reader, namespace: string, configMap: string, services: string[], timeoutSeconds: number): Promise<{ passed: boolean; message: string }> {
  const cm = await client.get<KubeObject & { data?: Record<string, string> }>(configMapResource, namespace, configMap);
  if (!cm) return { passed: false, message: `ConfigMap ${namespace}/${configMap} (spec.rollout.smokeTest.configMap) does not exist` };
  let requests: SmokeRequest[];
  try {
    requests = JSON.parse(cm.data?.['requests.json'] ?? '') as SmokeRequest[];
    if (!Array.isArray(requests) || requests.length === 0) throw new Error('not a list of requests');
  } catch (err) {
    return { passed: false, message: `ConfigMap ${namespace}/${configMap}: key requests.json must hold a JSON list of requests ({method, path, body, expectedStatus, jsonPath}): ${(err as Error).message}` };
  }
  let sent = 0;
  for (const service of services) {
    const { items } = await client.list<KubeObject & { endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[]; ports?: { name?: string; port?: number }[] }>(
      endpointSliceResource,
      namespace,
      { labelSelector: `kubernetes.io/service-name=${service}` },
    );
    const slice = items.find((s) => s.endpoints?.some((e) => e.conditions?.ready !== false));
    const address = slice?.endpoints?.find((e) => e.conditions?.ready !== false)?.addresses[0];
    const port = slice?.ports?.find((p) => p.name === 'http')?.port ?? slice?.ports?.[0]?.port;
    if (!address || !port) return { passed: false, message: `Service ${namespace}/${service} has no ready endpoint to send the smoke test to` };
    for (const r of requests) {
      const method = r.method ?? 'GET';
      const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}${r.path ?? '/'}`;
      const what = `${method} ${r.path ?? '/'} to ${service}`;
      let status: number;
      let text: string;
      try {
        const res = await fetch(url, {
          method,
          ...(r.body !== undefined ? { body: typeof r.body === 'string' ? r.body : JSON.stringify(r.body), headers: { 'content-type': 'application/json' } } : {}),
          signal: AbortSignal.timeout(timeoutSeconds * 1000),
        });
        status = res.status;
        text = await res.text();
      } catch (err) {
        return { passed: false, message: `${what}: no answer (${(err as Error).message})` };
      }
      const expected = r.expectedStatus ?? 200;
      if (status !== expected) return { passed: false, message: `${what} answered ${status}, expected ${expected}: ${text.slice(0, 300)}` };
      if (r.jsonPath) {
        let found: unknown;
        try {
          found = r.jsonPath.split('.').filter(Boolean).reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), JSON.parse(text));
        } catch {
          found = undefined;
        }
        if (found === undefined) return { passed: false, message: `${what}: the answer has no ${r.jsonPath}: ${text.slice(0, 300)}` };
      }
      sent++;
    }
  }
  return { passed: true, message: `${sent} request(s) answered as expected` };
}

const resourceQuotaResource = { group: '', version: 'v1', kind: 'ResourceQuota', plural: 'resourcequotas', namespaced: true } as const;
const nodeResource = { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false } as const;

/**
 * Whether the namespace's ResourceQuotas and the nodes can hold what the new version adds beside the
 * serving one: quota headroom for its pods, CPUs, memory and GPUs, and for each of its variants a
 * node whose allocatable resources fit one replica.
 */
/**
 * Lists shared by the reconciles that ask while one is in flight: a burst of new endpoints checks
 * capacity against fewer lists of nodes and quotas. A list is never kept once answered, so a quota
 * created just before an endpoint is always seen.
 */
export class SharedLists {
  private readonly inFlight = new Map<string, Promise<KubeObject[]>>();
  private readonly client: Reader;

  constructor(client: Reader) {
    this.client = client;
  }

  list<T extends KubeObject>(r: { plural: string; group: string; version: string; kind: string; namespaced: boolean }, namespace: string | undefined): Promise<T[]> {
    const key = `${r.plural}.${r.group}/${namespace ?? ''}`;
    const pending = this.inFlight.get(key);
    if (pending) return pending as Promise<T[]>;
    const items = this.client.list<T>(r, namespace).then((l) => l.items);
    this.inFlight.set(key, items);
    const done = () => this.inFlight.delete(key);
    items.then(done, done);
    return items;
  }
}

export async function checkCapacity(lists: SharedLists, namespace: string, target: VersionPlan, serving: VersionPlan | undefined): Promise<{ ok: boolean; message: string }> {
  const shared = new Set(serving?.variants.map((v) => v.instance) ?? []);
  const added = target.variants.filter((v) => !shared.has(v.instance));
  if (added.length === 0) return { ok: true, message: 'nothing to add' };
  const per = (v: (typeof added)[number]) => ({ cpu: quantityValue(v.variant.cpus ?? 0) ?? 0, memory: quantityValue(v.variant.memory ?? 0) ?? 0, gpu: v.variant.gpus ?? 0, gpuResource: v.variant.gpuResource ?? defaultGpuResource });
  // GPUs count per resource name: a variant may ask for amd.com/gpu, another for nvidia.com/gpu.
  const gpus = new Map<string, number>();
  for (const v of added) if (v.variant.gpus) gpus.set(per(v).gpuResource, (gpus.get(per(v).gpuResource) ?? 0) + (v.variant.instances ?? 1) * v.variant.gpus);
  const total = added.reduce(
    (t, v) => {
      const n = v.variant.instances ?? 1;
      const p = per(v);
      return { pods: t.pods + n, cpu: t.cpu + n * p.cpu, memory: t.memory + n * p.memory, gpu: t.gpu + n * p.gpu };
    },
    { pods: 0, cpu: 0, memory: 0, gpu: 0 },
  );
  type Node = KubeObject & { spec?: { unschedulable?: boolean }; status?: { allocatable?: Record<string, string> } };
  // Both lists at once: one round trip.
  const nodesListed = lists.list<Node>(nodeResource, undefined);
  nodesListed.catch(() => undefined);
  const quotas = await lists.list<KubeObject & { status?: { hard?: Record<string, string>; used?: Record<string, string> } }>(resourceQuotaResource, namespace);
  for (const q of quotas) {
    const hard = q.status?.hard ?? {};
    const used = q.status?.used ?? {};
    for (const [key, need] of [
      ['pods', total.pods],
      ['requests.cpu', total.cpu],
      ['cpu', total.cpu],
      ['limits.cpu', total.cpu],
      ['requests.memory', total.memory],
      ['memory', total.memory],
      ['limits.memory', total.memory],
      ...[...gpus].map(([resource, n]) => [`requests.${resource}`, n] as const),
    ] as const) {
      if (hard[key] === undefined || need === 0) continue;
      const left = (quantityValue(hard[key]) ?? 0) - (quantityValue(used[key] ?? '0') ?? 0);
      if (need > left) return { ok: false, message: `ResourceQuota ${namespace}/${q.metadata.name} leaves ${formatAmount(key, left)} of ${key}, and the new version needs ${formatAmount(key, need)} beside the serving one` };
    }
  }
  let nodes: Node[];
  try {
    nodes = await nodesListed;
  } catch (err) {
    // Installed with global.rbac.create=false and no right to list nodes: the quota check still holds.
    if (err instanceof KubeError && err.code === 403) return { ok: true, message: `the quota can hold ${total.pods} more pod(s); nodes not checked (no right to list them)` };
    throw err;
  }
  const schedulable = nodes.filter((n) => !n.spec?.unschedulable);
  for (const v of added) {
    const p = per(v);
    // Only the nodes its nodeSelector picks can hold it.
    const selected = schedulable.filter((n) => Object.entries(v.variant.nodeSelector ?? {}).every(([k, want]) => n.metadata.labels?.[k] === want));
    const fits = selected.some((n) => {
      const a = n.status?.allocatable ?? {};
      return (quantityValue(a.cpu ?? '0') ?? 0) >= p.cpu && (quantityValue(a.memory ?? '0') ?? 0) >= p.memory && (quantityValue(a[p.gpuResource] ?? '0') ?? 0) >= p.gpu;
    });
    if (!fits) {
      const which = v.variant.nodeSelector && Object.keys(v.variant.nodeSelector).length ? `the ${selected.length} schedulable node(s) its nodeSelector picks` : `the ${schedulable.length} schedulable node(s)`;
      return {
        ok: false,
        message: `no node can hold a replica of ${v.variant.model} (${p.cpu} CPUs, ${formatAmount('memory', p.memory)} memory${p.gpu ? `, ${p.gpu} ${p.gpuResource}` : ''}): ${which} allocate less`,
      };
    }
  }
  return { ok: true, message: `the quota and the nodes can hold ${total.pods} more pod(s)` };
}

function formatAmount(key: string, n: number): string {
  return key.includes('memory') ? `${Math.round(n / 2 ** 20)}Mi` : String(Math.round(n * 1000) / 1000);
}

export interface GateDeps {
  client: Reader;
  caches: Caches;
  config: OperatorConfig;
  provider: RoutingProvider;
  metrics?: Metrics;
  prometheus?: PrometheusClient;
  sharedLists: SharedLists;
}

/**
 * The gates that need the world, run before the decision when they are due: the metric gates while
 * the new version takes traffic, the capacity check before anything of it exists, and the smoke
 * test once it is Available and before it takes traffic.
 */
export async function runGates(deps: GateDeps, endpoint: MachineLearningEndpoint, input: RolloutInput): Promise<void> {
  const { caches, client, config, provider, metrics, prometheus, sharedLists } = deps;
  const { target } = input;
  const rollout = endpoint.spec.rollout ?? {};
  const namespace = endpoint.metadata.namespace!;
  const serving = (() => {
    const v = input.status.endpointConfigVersion;
    return v ? (v === target?.version ? target : input.snapshot(v)) : undefined;
  })();
  if (!target || target.version === serving?.version || input.routeBlocked) return;
  const newInstances = target.variants.filter((v) => !serving?.variants.some((s) => s.instance === v.instance));
  const checks = rollout.analysis?.checks ?? [];
  if (checks.length) {
    input.analysis = await runAnalysis({
      status: input.status,
      rollout,
      checks,
      target,
      serving,
      namespace,
      endpoint: endpoint.metadata.name!,
      config,
      provider: provider.name,
      prometheus,
      now: input.now,
    });
    for (const r of input.analysis ?? []) {
      if (r.evaluatedAt === iso(input.now)) metrics?.analysisEvaluations.inc({ result: r.result ?? 'Inconclusive' });
      if (r.value !== undefined) metrics?.analysisValue.set({ namespace, endpoint: endpoint.metadata.name!, check: r.name }, Number(r.value));
    }
  }
  if (!rollout.dryRun && newInstances.length && newInstances.every((v) => !caches.deployments.get(namespace, v.instance))) {
    input.capacity = await checkCapacity(sharedLists, namespace, target, serving);
  }
  const recorded = input.status.rollout;
  const smokeDone = recorded?.version === target.version && recorded.plan === planFingerprint(rollout) && recorded.smokeTest !== undefined;
  const takesTraffic = (input.route?.versions.get(target.version) ?? 0) > 0;
  // The instances it tests are the new ones, asked for with the counts the decision uses (an
  // instance shared with the serving version runs the larger count of the two, and is not tested).
  const starting = instanceReplicas(target);
  if (rollout.smokeTest && !smokeDone && !takesTraffic && newInstances.every((v) => input.workload(v, starting.get(v.instance)!).available)) {
    input.smokeTest = await runSmokeTest(client, namespace, rollout.smokeTest.configMap, newInstances.map((v) => v.instance), rollout.smokeTest.timeoutSeconds ?? 10);
  }
}
