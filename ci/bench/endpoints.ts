// `npm run bench`: for each N (50, 200 and 1,000 by default), N endpoints of 2 variants each are
// created at once on a fresh local cluster, routed by the Gateway API provider on the cluster's
// shared Gateway, and measured against a lower bound made in the same cluster: the same objects
// applied directly by a minimal client that already knows the answer, timed until every Deployment
// is Available and the gateway has accepted every route (what InService means). Both sides' clocks
// start when the N are asked for. The lower bound's client concurrency is swept first and its
// fastest kept; then --runs rounds (3) of both sides, the order alternating, each run in a namespace
// of its own that is deleted, and the cluster settled, before the next; the median and the spread of
// the rounds are printed, and the controller's own share (from the later of "Deployments Available"
// and "route accepted" to InService) apart from the API server's and the gateway's. After the last
// round one real request per endpoint goes through the gateway, and the controller is restarted cold
// over the N converged endpoints. Figures are printed, never asserted.
//
// The controller runs as the image runs it: the compiled JavaScript of controller/dist (built here
// with the project's TypeScript), unless --type-stripping runs controller/src/main.ts directly.
// Usage: npm run bench [-- --endpoints=50,200,1000 --runs=3 --lower-bound-concurrency=4,16,64 --concurrency=8 --controller-concurrency=16
//   --kube-api-qps=N --kube-api-burst=N --cpu-prof --controller-log=PATH --controller-tree=DIR]
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../../controller/src/api/generated.ts';
import { labels } from '../../controller/src/desired/labels.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { Informer } from '../../controller/src/kube/informer.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { parseConfig, type OperatorConfig } from '../../controller/src/options/config.ts';
import { routingProvider } from '../../controller/src/routing/providers.ts';
import { desiredState } from '../../controller/src/reconcile/desired-state.ts';
import { startControlPlane, type ControlPlane } from '../cluster/control-plane.ts';
import {
  chartConfig,
  installChart,
  release,
  serviceAccount,
  serviceAccountKubeconfig,
  startControllerProcess,
} from '../cluster/operator.ts';
import { log } from '../log.ts';
import { percentile, report, startLoad, type Sample } from '../traffic/load.ts';
import { waitFor } from '../wait.ts';

const root = join(import.meta.dirname, '..', '..');
const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const sizes = (flag('endpoints') ?? '50,200,1000').split(',').map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1))
  throw new Error(`--endpoints=${flag('endpoints')}: expected counts separated by commas, e.g. 50,200,1000`);
/** Writes at once of the controller run's client (N endpoint applies). */
const concurrency = Number(flag('concurrency') ?? 8);
/** The lower bound's client concurrencies tried at each size; the fastest is the one measured. */
const lowerBoundConcurrencies = (flag('lower-bound-concurrency') ?? '4,16,64').split(',').map(Number);
if (lowerBoundConcurrencies.some((n) => !Number.isInteger(n) || n < 1))
  throw new Error(
    `--lower-bound-concurrency=${flag('lower-bound-concurrency')}: expected counts separated by commas, e.g. 4,16,64`,
  );
/** Rounds of both sides per size (the median and spread are over them). */
const runs = Number(flag('runs') ?? 3);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs=${flag('runs')}: expected a count >= 1`);
const controllerConcurrency = Number(flag('controller-concurrency') ?? 16);
const typeStripping = process.argv.includes('--type-stripping');
// --controller-tree=DIR: the controller of another checkout (a git worktree of an older commit),
// compiled there and measured by this harness, for a before/after comparison of the same runs. DIR
// needs its node_modules (`npm ci` there, or a link to this tree's when the dependencies are the
// same); the chart, the CRDs, the operator config and the node flags stay this tree's, so an older
// controller must accept them.
const controllerTree = flag('controller-tree') ?? root;
if (typeStripping && controllerTree !== root)
  throw new Error('--controller-tree runs a compiled controller: drop --type-stripping');
const cpuProfile = process.argv.includes('--cpu-prof');
/** Where to write the controller's debug log of each run (`<path>.<N>`), to see where its time goes. */
const controllerLog = flag('controller-log');
/** The controller's client rate limit, when not the chart's default. */
const controllerArgs = [
  flag('kube-api-qps') && `--kube-api-qps=${flag('kube-api-qps')}`,
  flag('kube-api-burst') && `--kube-api-burst=${flag('kube-api-burst')}`,
].filter((a): a is string => !!a);
const apiVersion = 'ml-operator.dev/v1alpha1';
const quiet = pino({ level: 'silent' });

// No artifacts: the local cluster runs each pod's fetcher as a process of its own, and thousands of
// them would measure process start-up on two cores, the same in both runs, rather than the controller.
const models: Record<string, MachineLearningModelSpec> = {
  champion: { image: 'acme/model:1', port: 8080, readinessPath: '/' },
  challenger: { image: 'acme/model:2', port: 8080, readinessPath: '/' },
};
const config: MachineLearningEndpointConfigSpec = {
  models: [
    { model: 'champion', weight: 90, instances: 1, cpus: '100m', memory: '128Mi' },
    { model: 'challenger', weight: 10, instances: 1, cpus: '100m', memory: '128Mi' },
  ],
};
/** What the controller creates per endpoint: HTTPRoute, config snapshot, 2 model snapshots, 2 Deployments, 2 Services. */
const objectsPerEndpoint = 8;
/** Status writes a snapshot needs (the status subresource cannot be set at creation): the config's and the 2 models'. */
const snapshotStatusesPerEndpoint = 3;
const endpointName = (i: number) => `e${String(i).padStart(4, '0')}`;

/** Runs `work` over 0..count-1 with at most `limit` at once. */
async function pool(count: number, limit: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

/** A figure over the runs of one size: the median, and the spread (least and most). */
interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((x, y) => x - y);
  return { median: percentile(sorted, 50), min: sorted[0] ?? 0, max: sorted.at(-1) ?? 0 };
}

interface LowerBoundRun {
  concurrency: number;
  seconds: number;
  medianMs: number;
  p90Ms: number;
  availableMedianMs: number;
  /** From the run's start to both of an endpoint's Deployments existing (median). */
  createdMedianMs: number;
  writesPerEndpoint: number;
}

interface ControllerRun {
  seconds: number;
  medianMs: number;
  p90Ms: number;
  /** From the run's start to an endpoint's Deployments being Available: the API server's, kube-controller-manager's and the nodes' share. */
  availableMs: { median: number; p90: number };
  /** From the run's start to both of an endpoint's Deployments existing: the controller's pipeline and the API server's writes. */
  createdMs: { median: number; p90: number };
  /** From an endpoint's Deployments being Available to the gateway accepting its route (written once they are): the gateway's share. */
  gatewayLagMs: { median: number; p90: number };
  /** From the later of "Deployments Available" and "route accepted" to InService: the controller's own share. */
  ownLagMs: { median: number; p90: number; p99: number; max: number };
  writes: Record<'objects' | 'snapshotStatuses' | 'endpointStatuses' | 'events' | 'other', number>;
  cpuSeconds: number;
  peakRssKiB: number;
  /** At the end of the run: the JavaScript heap in use and reserved, and the resident set. */
  heap: { usedMiB: number; totalMiB: number; rssMiB: number };
  throttled: number;
  reconciles: number;
}

interface Result {
  endpoints: number;
  /** The lower bound's sweep over client concurrency (one run each); the fastest is the one measured. */
  sweep: LowerBoundRun[];
  lowerBound: LowerBoundRun[];
  controller: ControllerRun[];
  /** Which side ran first in each round. */
  order: string[];
  gateway: { answered: number; byStatus: Record<string, number>; p50: number; p99: number };
  restart: { readyMs: number; reconciledMs: number; writes: number; peakRssKiB: number };
  apiServer: { conflictsByUser: Record<string, number>; throttled: number; controllerRequests: Record<string, number> };
}

interface Bench {
  cluster: ControlPlane;
  client: KubeClient;
  operatorConfig: OperatorConfig;
  /** Write requests of `client` so far. */
  writes(): number;
}

/**
 * A write retried on the answers an overloaded API server gives (429, 500, 503, 504), with exponential
 * backoff from 100 ms, at most 6 tries: the controller gets past them too (its client retries a 429, its
 * work queue the reconcile), so one such answer must not end the lower bound's run.
 */
async function retryTransient<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      const code = (err as { code?: number }).code;
      if (attempt >= 5 || ![429, 500, 503, 504].includes(code ?? 0)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
    }
  }
}

/** Deletes a run's namespace and waits until it is gone, with everything in it: the next run starts on a settled cluster. */
async function deleteAndSettle(b: Bench, namespace: string): Promise<void> {
  const started = Date.now();
  await b.client.delete(resources.namespace, undefined, namespace);
  await waitFor(`the namespace ${namespace} and everything in it to be gone`, 900_000, async () =>
    (await b.client.get(resources.namespace, undefined, namespace)) ? undefined : true,
  );
  const core = b.cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
  await waitFor(`the pods of ${namespace} to be gone`, 300_000, async () =>
    (await core.listPodForAllNamespaces({ fieldSelector: `metadata.namespace=${namespace}`, limit: 1 })).items.length
      ? undefined
      : true,
  );
  log(`bench: ${namespace} deleted and settled in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

/**
 * The lower bound: what a minimal client that already knows the answer must do, `concurrency` writes at
 * once, in a namespace of its own that is deleted (and the cluster settled) afterwards.
 */
async function lowerBound(b: Bench, endpoints: number, concurrency: number, run: string): Promise<LowerBoundRun> {
  const { client, operatorConfig } = b;
  const direct = `bench-direct-${run}`;
  await client.create(resources.namespace, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: direct } });
  // Done when both Deployments are Available and the gateway accepted the route: what InService means.
  const directTimes = perEndpointTimes(config.models.length + 1);
  const directAvailable = perEndpointTimes(config.models.length);
  const directCreated = perEndpointTimes(config.models.length);
  const directInformers = [
    deploymentsAvailable(
      client,
      direct,
      (name, deployment) => {
        directTimes.done(name, deployment);
        directAvailable.done(name, deployment);
      },
      directCreated.done,
    ),
    routesAccepted(client, direct, operatorConfig, (name) => directTimes.done(name, 'route')),
  ];
  log(
    `bench: ${endpoints}: lower bound (run ${run}, ${concurrency} writes at once): applying the objects of ${endpoints} endpoints directly`,
  );
  resetProgress();
  const directStarted = Date.now();
  // All N are asked for at once, as in the controller's run: each one's clock starts now.
  for (let i = 0; i < endpoints; i++) {
    directTimes.started(endpointName(i), directStarted);
    directAvailable.started(endpointName(i), directStarted);
    directCreated.started(endpointName(i), directStarted);
  }
  const writesBefore = b.writes();
  await pool(endpoints, concurrency, async (i) => {
    const endpoint: MachineLearningEndpoint = {
      metadata: { name: endpointName(i), namespace: direct, uid: '00000000-0000-0000-0000-000000000000' },
      spec: { config: 'ab' },
    };
    // What the controller wants for the endpoint once its version is Available, as desiredState
    // says from the same templates, less the snapshots (serving needs none of them).
    const provider = routingProvider(operatorConfig);
    const state = desiredState({
      ctx: { endpoint, config: operatorConfig },
      provider,
      templates: {
        config: { spec: config },
        models: new Map(Object.entries(models)),
        kept: () => undefined,
        promotionMarked: () => false,
        pin: (plan) => plan,
      },
      rollout: {
        generation: 1,
        spec: endpoint.spec,
        status: {},
        workload: () => ({ ready: 1, available: true }),
        now: new Date(),
      },
      deadlineSeconds: 600,
      live: { startReplicas: () => 1, hostNodes: () => [], loaded: () => true, auxiliaryMissing: false },
      routed: false,
      hostBlocked: false,
      observed: { readyOf: () => 1 },
    });
    if (!state.resolved.target) throw new Error(`unresolved: ${state.resolved.problem?.message}`);
    const isRoute = (d: { resource: unknown }) => d.resource === provider.kinds.route;
    const snapshot = (d: { resource: unknown }) =>
      d.resource === resources.endpointConfig || d.resource === resources.model;
    const objects = [
      ...state.routing.filter((d) => !isRoute(d)),
      ...state.workloads.filter((d) => !snapshot(d)),
      ...state.routing.filter(isRoute),
    ];
    for (const d of objects) {
      delete d.object.metadata.ownerReferences;
      await retryTransient(() => client.apply(d.resource, d.object));
    }
  });
  const directWrites = b.writes() - writesBefore;
  await waitFor(`every directly applied Deployment to be Available (${endpoints} endpoints)`, 900_000, async () =>
    progress('lower bound', directTimes, endpoints, directStarted),
  );
  const seconds = (Date.now() - directStarted) / 1000;
  for (const i of directInformers) i.stop();
  const result = {
    concurrency,
    seconds,
    ...directTimes.percentiles(),
    availableMedianMs: directAvailable.percentiles().medianMs,
    createdMedianMs: directCreated.percentiles().medianMs,
    writesPerEndpoint: directWrites / endpoints,
  };
  log(
    `bench: ${endpoints}: lower bound (run ${run}, ${concurrency} at once): ${seconds.toFixed(1)}s, median ${(result.medianMs / 1000).toFixed(1)}s per endpoint`,
  );
  await deleteAndSettle(b, direct);
  return result;
}

/**
 * The controller: templates first, then N endpoints at once, in a namespace of its own; with `last`, one
 * request per endpoint through the gateway and a cold restart over the converged endpoints. The namespace
 * is deleted (and the cluster settled) afterwards.
 */
async function controllerRun(
  b: Bench,
  endpoints: number,
  run: string,
  last: boolean,
): Promise<{ run: ControllerRun; gateway?: Result['gateway']; restart?: Result['restart'] }> {
  const { client, operatorConfig, cluster } = b;
  const admin = cluster.kubeConfig();
  const ns = `bench-controller-${run}`;
  await client.create(resources.namespace, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const profileDir = cpuProfile && last ? mkdtempSync(join(tmpdir(), 'ml-operator-bench-prof-')) : undefined;
  const controller = await startControllerProcess({
    kubeconfig: await serviceAccountKubeconfig(admin),
    config: await chartConfig(admin),
    namespaces: [ns],
    concurrency: controllerConcurrency,
    entry,
    nodeOptions: [...imageNodeOptions, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
    logLevel: controllerLog ? 'debug' : undefined,
    args: controllerArgs,
  });
  for (const [name, spec] of Object.entries(models))
    await client.apply(resources.model, {
      apiVersion,
      kind: 'MachineLearningModel',
      metadata: { name, namespace: ns },
      spec,
    });
  await client.apply(resources.endpointConfig, {
    apiVersion,
    kind: 'MachineLearningEndpointConfig',
    metadata: { name: 'ab', namespace: ns },
    spec: config,
  });
  const times = perEndpointTimes();
  resetProgress();
  // When each endpoint's Deployments became Available, and its route accepted: the switch should follow at once.
  const available = perEndpointTimes(config.models.length);
  const accepted = perEndpointTimes();
  const created = perEndpointTimes(config.models.length);
  const controllerInformers = [
    deploymentsAvailable(client, ns, available.done, created.done),
    routesAccepted(client, ns, operatorConfig, accepted.done),
  ];
  const inService = new Informer<MachineLearningEndpoint & KubeObject>(
    client,
    resources.endpoint,
    { namespace: ns, logger: quiet },
    {
      onAdd: (e) => isInService(e) && times.done(e.metadata.name),
      onUpdate: (e) => isInService(e) && times.done(e.metadata.name),
    },
  );
  inService.start();
  await inService.waitForSync();
  const metricsBefore = await controller.metrics();
  const cpuBefore = cpuSeconds(controller.child.pid!);
  log(`bench: ${endpoints}: controller (run ${run}): creating ${endpoints} endpoints at once`);
  const started = Date.now();
  // Every clock starts at the run's start, as the lower bound's do.
  for (let i = 0; i < endpoints; i++)
    for (const t of [times, available, accepted, created]) t.started(endpointName(i), started);
  await pool(endpoints, concurrency, (i) =>
    client.apply(resources.endpoint, {
      apiVersion,
      kind: 'MachineLearningEndpoint',
      metadata: { name: endpointName(i), namespace: ns },
      spec: { config: 'ab' },
    }),
  );
  await waitFor(`every endpoint to be InService (${endpoints})`, 900_000, async () =>
    progress('controller', times, endpoints, started),
  );
  const seconds = (Date.now() - started) / 1000;
  inService.stop();
  for (const i of controllerInformers) i.stop();
  const names = [...Array(endpoints).keys()].map(endpointName);
  const sorted = (xs: (number | undefined)[]) => xs.filter((x): x is number => x !== undefined).sort((x, y) => x - y);
  const availableMs = sorted(
    names.map((n) => available.doneAt(n)).map((t) => (t === undefined ? undefined : t - started)),
  );
  const gatewayLag = sorted(
    names.map((n) => {
      const [a, r] = [available.doneAt(n), accepted.doneAt(n)];
      return a === undefined || r === undefined ? undefined : r - a;
    }),
  );
  const ownLag = sorted(
    names.map((n) => {
      const [a, r, done] = [available.doneAt(n), accepted.doneAt(n), times.doneAt(n)];
      return a === undefined || r === undefined || done === undefined ? undefined : done - Math.max(a, r);
    }),
  );
  // Let the last status writes land before counting.
  await waitFor('the work queue to drain', 60_000, async () =>
    /^ml_operator_workqueue_depth 0$/m.test(await controller.metrics()) ? true : undefined,
  );
  // The kernel's high-water mark of the process: its peak, whenever it came.
  const peakRss = peakRssOf(controller.child.pid!);
  const cpu = cpuSeconds(controller.child.pid!) - cpuBefore;
  const metricsAfter = await controller.metrics();
  const result: ControllerRun = {
    seconds,
    ...times.percentiles(),
    availableMs: { median: percentile(availableMs, 50), p90: percentile(availableMs, 90) },
    createdMs: { median: created.percentiles().medianMs, p90: created.percentiles().p90Ms },
    gatewayLagMs: { median: percentile(gatewayLag, 50), p90: percentile(gatewayLag, 90) },
    ownLagMs: {
      median: percentile(ownLag, 50),
      p90: percentile(ownLag, 90),
      p99: percentile(ownLag, 99),
      max: ownLag.at(-1) ?? 0,
    },
    writes: classifyWrites(metricsBefore, metricsAfter),
    cpuSeconds: cpu,
    peakRssKiB: peakRss,
    heap: {
      usedMiB: counter(metricsAfter, 'nodejs_heap_size_used_bytes') / 2 ** 20,
      totalMiB: counter(metricsAfter, 'nodejs_heap_size_total_bytes') / 2 ** 20,
      rssMiB: rss(controller.child.pid!) / 1024,
    },
    throttled:
      counter(metricsAfter, 'ml_operator_api_throttled_total') -
      counter(metricsBefore, 'ml_operator_api_throttled_total'),
    reconciles:
      counter(metricsAfter, 'ml_operator_reconcile_total') - counter(metricsBefore, 'ml_operator_reconcile_total'),
  };
  // Deleted endpoints drain (their finalizer) only while a controller runs: this one stops once its
  // namespace is gone, or, in the last run, for the cold restart, whose controller then sees it go.
  const stopController = async () => {
    await controller.stop();
    if (controllerLog) writeFileSync(`${controllerLog}.${endpoints}.${run}`, controller.logs());
    if (profileDir) {
      log(
        `bench: ${endpoints}: CPU profile of the controller while it served the ${endpoints} endpoints in ${profileDir} (open it in Chrome's DevTools or speedscope)`,
      );
      process.stderr.write(profileSummary(profileDir));
    }
  };
  log(
    `bench: ${endpoints}: controller (run ${run}): ${seconds.toFixed(1)}s, median ${(result.medianMs / 1000).toFixed(1)}s per endpoint; own share median ${result.ownLagMs.median} ms`,
  );
  if (!last) {
    await deleteAndSettle(b, ns);
    await stopController();
    return { run: result };
  }

  // Every endpoint answers through the gateway: one request each (the gateway may take a moment to serve the last routes).
  const { gateway } = cluster;
  const host = (i: number) => `${endpointName(i)}.${ns}.${operatorConfig.defaultDomain}`;
  const url = `http://${gateway.address}:${gateway.port}/predict`;
  await waitFor('the gateway to route the last endpoint', 60_000, async () => {
    const probe = startLoad({ url, host: host(endpoints - 1), requests: 1, concurrency: 1, maxDurationMs: 5000 });
    await probe.done;
    return probe.samples[0].status === 200 ? true : undefined;
  });
  const answers: Sample[] = [];
  await pool(endpoints, 16, async (i) => {
    const one = startLoad({ url, host: host(i), requests: 1, concurrency: 1, maxDurationMs: 10_000 });
    await one.done;
    answers.push(one.samples[0]);
  });
  const traffic = report(answers, 0);

  // A cold restart over N converged endpoints: how soon it is ready, and that it writes nothing.
  await stopController();
  log(`bench: ${endpoints}: restarting the controller cold over ${endpoints} converged endpoints`);
  const restarted = Date.now();
  const again = await startControllerProcess({
    kubeconfig: await serviceAccountKubeconfig(admin),
    config: await chartConfig(admin),
    namespaces: [ns],
    concurrency: controllerConcurrency,
    entry,
    args: controllerArgs,
    nodeOptions: imageNodeOptions,
  });
  const readyMs = await waitFor('the restarted controller to be ready', 120_000, async () =>
    (await fetch(`http://127.0.0.1:${again.healthPort}/readyz`).catch(() => undefined))?.ok
      ? Date.now() - restarted
      : undefined,
  );
  const reconciledMs = await waitFor('the restarted controller to reconcile every endpoint once', 300_000, async () => {
    const text = await again.metrics();
    return counter(text, 'ml_operator_reconcile_total') >= endpoints && /^ml_operator_workqueue_depth 0$/m.test(text)
      ? Date.now() - restarted
      : undefined;
  });
  const restartText = await again.metrics();
  const restart = {
    readyMs,
    reconciledMs,
    writes: sum(classifyWrites('', restartText)),
    peakRssKiB: peakRssOf(again.child.pid!),
  };
  await deleteAndSettle(b, ns);
  await again.stop();
  return {
    run: result,
    gateway: {
      answered: answers.filter((a) => a.status === 200 && a.backend?.instance).length,
      byStatus: traffic.byStatus,
      p50: traffic.latency.p50,
      p99: traffic.latency.p99,
    },
    restart,
  };
}

/**
 * One size on a fresh cluster: the lower bound's concurrency swept (one run each, the fastest kept), then
 * `runs` rounds of the lower bound and the controller, the order alternating, each run in a namespace of
 * its own deleted before the next one starts.
 */
async function measure(endpoints: number): Promise<Result> {
  log(`bench: ${endpoints} endpoints: starting a fresh local cluster`);
  const cluster = await startControlPlane({ nodes: Math.max(2, Math.ceil((endpoints * 4) / 240)) });
  try {
    const admin = cluster.kubeConfig();
    const { gateway } = cluster;
    await installChart(cluster.kubeconfigPath, [
      'controller.config.routing.provider=gatewayAPI',
      `controller.config.routing.gatewayAPI.sharedGateway.name=${gateway.shared.name}`,
      `controller.config.routing.gatewayAPI.sharedGateway.namespace=${gateway.shared.namespace}`,
    ]);
    let writes = 0;
    const client = new KubeClient(admin, { fieldManager: 'bench', onWrite: () => writes++ });
    const b: Bench = {
      cluster,
      client,
      operatorConfig: parseConfig(await chartConfig(admin), 'chart ConfigMap'),
      writes: () => writes,
    };

    const sweep: LowerBoundRun[] = [];
    for (const c of lowerBoundConcurrencies) sweep.push(await lowerBound(b, endpoints, c, `sweep-${c}`));
    const fastest = sweep.reduce((x, y) => (y.seconds < x.seconds ? y : x)).concurrency;
    log(
      `bench: ${endpoints}: the lower bound is fastest with ${fastest} writes at once (${sweep.map((r) => `${r.concurrency}: ${r.seconds.toFixed(1)}s`).join(', ')})`,
    );

    const lowerBounds: LowerBoundRun[] = [];
    const controllers: ControllerRun[] = [];
    const order: string[] = [];
    let gatewayResult: Result['gateway'] | undefined;
    let restart: Result['restart'] | undefined;
    for (let round = 0; round < runs; round++) {
      const controllerFirst = round % 2 === 1;
      order.push(controllerFirst ? 'controller' : 'lower bound');
      for (const side of controllerFirst ? ['controller', 'lower'] : ['lower', 'controller']) {
        if (side === 'lower') {
          lowerBounds.push(await lowerBound(b, endpoints, fastest, String(round)));
        } else {
          const r = await controllerRun(b, endpoints, String(round), round === runs - 1);
          controllers.push(r.run);
          gatewayResult = r.gateway ?? gatewayResult;
          restart = r.restart ?? restart;
        }
      }
    }
    return {
      endpoints,
      sweep,
      lowerBound: lowerBounds,
      controller: controllers,
      order,
      gateway: gatewayResult!,
      restart: restart!,
      apiServer: await auditFigures(cluster),
    };
  } finally {
    await cluster.stop();
  }
}

function isInService(e: MachineLearningEndpoint): boolean {
  return e.status?.state === 'InService' && e.status.ready === '2/2';
}

/**
 * When each endpoint was created and when it was done: InService, or (`parts` > 1) once every part
 * of it is (both Deployments Available and its route accepted by the gateway).
 */
function perEndpointTimes(parts = 1) {
  const startedAt = new Map<string, number>();
  const doneAt = new Map<string, number>();
  const seen = new Map<string, Set<string>>();
  return {
    started: (name: string, at = Date.now()) => startedAt.set(name, at),
    done: (name: string, part = '') => {
      const set = seen.get(name) ?? new Set();
      seen.set(name, set.add(part));
      if (set.size >= parts && !doneAt.has(name)) doneAt.set(name, Date.now());
    },
    count: () => doneAt.size,
    doneAt: (name: string) => doneAt.get(name),
    percentiles: () => {
      const durations = [...doneAt].map(([name, at]) => at - (startedAt.get(name) ?? at)).sort((a, b) => a - b);
      return { medianMs: percentile(durations, 50), p90Ms: percentile(durations, 90) };
    },
  };
}

/** Watches the Deployments of a namespace and tells when one of an endpoint's appears, and when it is Available. */
function deploymentsAvailable(
  client: KubeClient,
  namespace: string,
  done: (endpoint: string, deployment: string) => void,
  created?: (endpoint: string, deployment: string) => void,
): Informer<KubeObject> {
  const seen = (d: KubeObject) => {
    const endpoint = d.metadata.labels?.[labels.endpoint];
    if (endpoint) created?.(endpoint, d.metadata.name);
    const status = (d.status ?? {}) as { readyReplicas?: number; availableReplicas?: number };
    if (endpoint && (status.readyReplicas ?? 0) >= 1 && (status.availableReplicas ?? 0) >= 1)
      done(endpoint, d.metadata.name);
  };
  const informer = new Informer<KubeObject>(
    client,
    resources.deployment,
    { namespace, logger: quiet },
    { onAdd: seen, onUpdate: seen },
  );
  informer.start();
  return informer;
}

/** Watches the routes of a namespace and tells when the gateway has accepted an endpoint's. */
function routesAccepted(
  client: KubeClient,
  namespace: string,
  operatorConfig: OperatorConfig,
  done: (endpoint: string) => void,
): Informer<KubeObject> {
  const provider = routingProvider(operatorConfig);
  const seen = (r: KubeObject) => {
    const name = r.metadata.labels?.[labels.endpoint];
    if (!name) return;
    const ctx = { endpoint: { metadata: { name, namespace }, spec: { config: 'ab' } }, config: operatorConfig };
    if (provider.observe(ctx, r).status?.conditions.find((c) => c.type === 'Accepted')?.status === 'True') done(name);
  };
  const informer = new Informer<KubeObject>(
    client,
    provider.kinds.route,
    { namespace, logger: quiet },
    { onAdd: seen, onUpdate: seen },
  );
  informer.start();
  return informer;
}

let lastProgress = '';
let progressAt = 0;
const resetProgress = () => {
  lastProgress = '';
  progressAt = 0;
};
function progress(
  what: string,
  times: ReturnType<typeof perEndpointTimes>,
  endpoints: number,
  started: number,
): true | undefined {
  const count = times.count();
  const line = `bench: ${what}: ${count}/${endpoints} done after ${((Date.now() - started) / 1000).toFixed(0)}s`;
  // One line when the count moves, at most every 5 s: a person never waits in silence, nor drowns.
  if (line !== lastProgress && (count === endpoints || Date.now() - progressAt > 5000)) {
    log(line);
    lastProgress = line;
    progressAt = Date.now();
  }
  return count === endpoints ? true : undefined;
}

/** Sum of a counter's series in a Prometheus text exposition. */
function counter(text: string, name: string): number {
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'gm'))].reduce(
    (n, m) => n + Number(m[1]),
    0,
  );
}

/** The controller's write requests between two scrapes, by what they wrote. */
function classifyWrites(before: string, after: string): ControllerRun['writes'] {
  const series = (text: string) =>
    new Map(
      [...text.matchAll(/^ml_operator_api_writes_total\{([^}]*)\} ([0-9.e+]+)$/gm)].map((m) => [m[1], Number(m[2])]),
    );
  const a = series(before);
  const kinds = { objects: 0, snapshotStatuses: 0, endpointStatuses: 0, events: 0, other: 0 };
  for (const [labelsText, value] of series(after)) {
    const resource = labelsText.match(/resource="([^"]*)"/)?.[1] ?? '';
    const delta = value - (a.get(labelsText) ?? 0);
    if (resource === 'machinelearningendpoints/status') kinds.endpointStatuses += delta;
    else if (resource === 'machinelearningendpointconfigs/status' || resource === 'machinelearningmodels/status')
      kinds.snapshotStatuses += delta;
    else if (resource === 'events') kinds.events += delta;
    else if (resource.endsWith('/status') || resource === 'leases') kinds.other += delta;
    else kinds.objects += delta;
  }
  return kinds;
}

const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);

/**
 * What the API server's audit log says: conflicts (409) by user, and requests it throttled (429).
 * Read line by line: three rounds of 1,000 endpoints write more than a string can hold (512 MiB).
 */
async function auditFigures(cluster: ControlPlane): Promise<Result['apiServer']> {
  const conflictsByUser: Record<string, number> = {};
  const controllerRequests: Record<string, number> = {};
  let throttled = 0;
  const lines = createInterface({ input: createReadStream(cluster.auditLogPath), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    const controller = line.includes(`"username":"system:serviceaccount:${release.namespace}:${serviceAccount}"`);
    if (!controller && !line.includes('"code":409') && !line.includes('"code":429')) continue;
    const event = JSON.parse(line) as {
      verb?: string;
      objectRef?: { resource?: string; subresource?: string };
      user?: { username?: string };
      responseStatus?: { code?: number };
    };
    if (controller && event.objectRef?.resource !== 'leases') {
      const what = `${event.verb} ${event.objectRef?.resource ?? '?'}${event.objectRef?.subresource ? `/${event.objectRef.subresource}` : ''}${event.responseStatus?.code === 404 ? ' (404)' : ''}`;
      controllerRequests[what] = (controllerRequests[what] ?? 0) + 1;
    }
    const user = (event.user?.username ?? '?').replace(/^system:serviceaccount:[^:]+:/, 'sa:');
    if (event.responseStatus?.code === 409) conflictsByUser[user] = (conflictsByUser[user] ?? 0) + 1;
    if (event.responseStatus?.code === 429) throttled++;
  }
  return { conflictsByUser, throttled, controllerRequests };
}

function print(all: Result[]): void {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
  const ms = (x: number) => `${Math.round(x)} ms`;
  /** The median over the runs, and their spread. */
  const over = (values: number[], fmt: (x: number) => string) => {
    const v = spread(values);
    return `${fmt(v.median)} [${fmt(v.min)}-${fmt(v.max)}]`;
  };
  const ratio = (x: number) => `${x.toFixed(2)}x`;
  const lines = [
    '',
    `ml-operator benchmark: endpoints x 2 variants, created at once; per size ${runs} rounds of the lower bound and the controller, the order alternating, each run in a namespace of its own deleted (and settled) before the next; figures are the median of the rounds [least-most]`,
    `  controller client concurrency ${concurrency}, controller --concurrency=${controllerConcurrency} ${controllerArgs.join(' ') || '(chart default rate limit)'}, ${typeStripping ? 'controller/src with type stripping' : `compiled controller/dist of ${controllerTree} with the image's node flags (${imageNodeOptions.join(' ')})`}; lower bound concurrency swept over ${lowerBoundConcurrencies.join(', ')}`,
    '  every per-endpoint clock starts when the N endpoints are asked for (both sides)',
    '  the local API server: --max-requests-inflight=1000 --max-mutating-requests-inflight=500 (priority and fairness on); kube-controller-manager: --kube-api-qps=200 --kube-api-burst=400, 10 Deployment and ReplicaSet workers',
  ];
  for (const r of all) {
    const lb = r.lowerBound;
    const cs = r.controller;
    const c = cs.at(-1)!;
    const w = c.writes;
    const per = (x: number) => (x / r.endpoints).toFixed(2);
    const budget = objectsPerEndpoint + snapshotStatusesPerEndpoint + 2;
    lines.push(
      '',
      `  ${r.endpoints} endpoints (rounds started with: ${r.order.join(', ')})`,
      `    lower bound's sweep (one run each): ${r.sweep.map((x) => `${x.concurrency} at once ${x.seconds.toFixed(1)}s`).join(', ')}; kept ${lb[0].concurrency}`,
      `    lower bound (the same objects applied directly): all Available and routes accepted in ${over(
        lb.map((x) => x.seconds * 1000),
        s,
      )}; per endpoint median ${over(
        lb.map((x) => x.medianMs),
        s,
      )} (Deployments created: ${over(
        lb.map((x) => x.createdMedianMs),
        s,
      )}; Available: ${over(
        lb.map((x) => x.availableMedianMs),
        s,
      )}), p90 ${over(
        lb.map((x) => x.p90Ms),
        s,
      )}; ${lb[0].writesPerEndpoint.toFixed(1)} writes per endpoint`,
      `    controller: all InService in ${over(
        cs.map((x) => x.seconds * 1000),
        s,
      )}; per endpoint median ${over(
        cs.map((x) => x.medianMs),
        s,
      )}, p90 ${over(
        cs.map((x) => x.p90Ms),
        s,
      )}`,
      `    controller / lower bound, round by round: all InService ${over(
        cs.map((x, i) => x.seconds / lb[i].seconds),
        ratio,
      )} (target <= ${r.endpoints >= 1000 ? '1.3' : '1.2'}x); per endpoint median ${over(
        cs.map((x, i) => x.medianMs / lb[i].medianMs),
        ratio,
      )}`,
      `    where an endpoint's time goes (controller runs): both Deployments created after ${over(
        cs.map((x) => x.createdMs.median),
        s,
      )} median, p90 ${over(
        cs.map((x) => x.createdMs.p90),
        s,
      )} (the controller's pipeline and the API server's writes); Deployments Available after ${over(
        cs.map((x) => x.availableMs.median),
        s,
      )} median (API server, kube-controller-manager, nodes); ` +
        `then the gateway accepts the route after ${over(
          cs.map((x) => x.gatewayLagMs.median),
          ms,
        )} median, p90 ${over(
          cs.map((x) => x.gatewayLagMs.p90),
          ms,
        )} (the gateway)`,
      `    the controller's own share, from the later of "Deployments Available" and "route accepted" to InService: median ${over(
        cs.map((x) => x.ownLagMs.median),
        ms,
      )}, p90 ${over(
        cs.map((x) => x.ownLagMs.p90),
        ms,
      )}, p99 ${over(
        cs.map((x) => x.ownLagMs.p99),
        ms,
      )}, max ${over(
        cs.map((x) => x.ownLagMs.max),
        ms,
      )}`,
      `    last round: writes per endpoint ${per(sum(w))} (objects ${per(w.objects)}, snapshot statuses ${per(w.snapshotStatuses)}, endpoint statuses ${per(w.endpointStatuses)}, events ${per(w.events)}${w.other ? `, other ${per(w.other)}` : ''}); budget ${budget} (${objectsPerEndpoint} objects + ${snapshotStatusesPerEndpoint} snapshot statuses + 2)`,
      `    controller CPU ${over(
        cs.map((x) => (x.cpuSeconds * 1000) / r.endpoints),
        (x) => x.toFixed(1),
      )} ms per endpoint, ${(c.reconciles / r.endpoints).toFixed(1)} reconciles per endpoint (last round); peak RSS ${over(
        cs.map((x) => x.peakRssKiB / 1024),
        (x) => x.toFixed(0),
      )} MiB (target <= 150 MiB at 1,000); at the end of the last round: heap ${c.heap.usedMiB.toFixed(0)} MiB used of ${c.heap.totalMiB.toFixed(0)} MiB, RSS ${c.heap.rssMiB.toFixed(0)} MiB`,
      `    throttled: ${cs.reduce((n, x) => n + x.throttled, 0)} answers 429/Retry-After to the controller in all rounds; ${r.apiServer.throttled} 429s in the audit log; conflicts (409) by user: ${JSON.stringify(r.apiServer.conflictsByUser)}`,
      `    the controller's requests per endpoint and round, from the audit log (every round and the restart): ${Object.entries(
        r.apiServer.controllerRequests,
      )
        .sort((x, y) => y[1] - x[1])
        .map(([k, v]) => `${k} ${(v / r.endpoints / cs.length).toFixed(2)}`)
        .join(', ')}`,
      `    through the gateway (last round): ${r.gateway.answered}/${r.endpoints} endpoints answered by a model; statuses ${JSON.stringify(r.gateway.byStatus)}; p50 ${r.gateway.p50.toFixed(1)} ms, p99 ${r.gateway.p99.toFixed(1)} ms`,
      `    cold restart over ${r.endpoints} converged endpoints: ready in ${s(r.restart.readyMs)}, every endpoint reconciled in ${s(r.restart.reconciledMs)}, ${r.restart.writes} writes (target 0); peak RSS ${(r.restart.peakRssKiB / 1024).toFixed(0)} MiB`,
    );
  }
  if (all.length > 1) {
    lines.push('', '  the curve (medians over the rounds, per endpoint as N grows):');
    const first = all[0];
    const med = (xs: number[]) => spread(xs).median;
    for (const r of all) {
      const rssOf = (x: Result) => med(x.controller.map((c) => c.peakRssKiB));
      const extra =
        r === first
          ? ''
          : `, RSS per extra endpoint ${((rssOf(r) - rssOf(first)) / (r.endpoints - first.endpoints)).toFixed(1)} KiB`;
      lines.push(
        `    N=${String(r.endpoints).padStart(5)}: ${((med(r.controller.map((c) => c.seconds)) * 1000) / r.endpoints).toFixed(1)} ms per endpoint (lower bound ${((med(r.lowerBound.map((c) => c.seconds)) * 1000) / r.endpoints).toFixed(1)}), CPU ${((med(r.controller.map((c) => c.cpuSeconds)) * 1000) / r.endpoints).toFixed(1)} ms per endpoint${extra}`,
      );
    }
  }
  process.stdout.write(lines.join('\n') + '\n\n');
}

/** Where a CPU profile's time went: the functions with the most self time, and idle time. */
function profileSummary(dir: string): string {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) return `no .cpuprofile in ${dir}\n`;
  type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number } };
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
    nodes: Node[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!.callFrame;
    const where = frame.url ? `${frame.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName || '(anonymous)'} ${where}`.trim();
    const us = profile.timeDeltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  });
  const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 12);
  return (
    [
      '  CPU profile, self time (of ' + (total / 1e6).toFixed(1) + 's sampled):',
      ...top.map(
        ([k, us]) =>
          `    ${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(6)} ms  ${k}`,
      ),
      '',
    ].join('\n') + '\n'
  );
}

/** Current resident set of a process, in KiB. */
function rss(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)/m)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Peak resident set (high-water mark) of a process, in KiB. */
function peakRssOf(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+)/m)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** CPU time (user + system) a process has used, in seconds (Linux clock ticks are 1/100 s). */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

if (!typeStripping) {
  log(`bench: compiling the controller of ${controllerTree} (controller/tsconfig.build.json), as its image does`);
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(controllerTree, 'controller/tsconfig.build.json')],
    { stdio: 'inherit' },
  );
}
const entry: string | undefined = typeStripping ? undefined : join(controllerTree, 'controller', 'dist', 'main.js');
/**
 * The node flags the image runs the controller with (NODE_OPTIONS and the flags between node and
 * /app/dist/main.js in controller/Dockerfile's ENTRYPOINT), so that memory is measured as it is in a cluster.
 */
function dockerfileNodeFlags(): string[] {
  const dockerfile = readFileSync(join(root, 'controller', 'Dockerfile'), 'utf8');
  const fromEnv =
    dockerfile
      .match(/NODE_OPTIONS="([^"]*)"/)?.[1]
      .split(/\s+/)
      .filter(Boolean) ?? [];
  const entrypoint = dockerfile.match(/^ENTRYPOINT (\[.*\])$/m);
  const fromEntrypoint = entrypoint ? (JSON.parse(entrypoint[1]) as string[]).slice(1, -1) : [];
  return [...fromEnv, ...fromEntrypoint];
}
const imageNodeOptions = typeStripping ? [] : dockerfileNodeFlags();

const results: Result[] = [];
for (const n of sizes) results.push(await measure(n));
print(results);
