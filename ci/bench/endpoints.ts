// `npm run bench`: N endpoints of 2 variants each created at once on the local cluster, routed by
// the Gateway API provider on the cluster's shared Gateway. Reports the time until all are InService,
// the controller's write requests per endpoint and its peak RSS, against the lower bound: the same
// objects applied directly by a minimal client, timed until every Deployment is Available. Then one
// real request per endpoint goes through the gateway. Figures are printed, never asserted.
// Usage: npm run bench [-- --endpoints=200 --concurrency=8 --controller-concurrency=8]
import { readFileSync } from 'node:fs';
import type { MachineLearningEndpoint, MachineLearningEndpointConfigSpec, MachineLearningModelSpec } from '../../controller/src/api/generated.ts';
import * as desired from '../../controller/src/desired/objects.ts';
import { planFromTemplates } from '../../controller/src/desired/plan.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { parseConfig } from '../../controller/src/options.ts';
import { routingProvider } from '../../controller/src/routing/providers.ts';
import { backends } from '../../controller/src/routing/route.ts';
import { startControlPlane } from '../cluster/control-plane.ts';
import { chartConfig, installChart, serviceAccountKubeconfig, startControllerProcess } from '../cluster/operator.ts';
import { log } from '../log.ts';
import { report, startLoad, type Sample } from '../traffic/load.ts';
import { waitFor } from '../wait.ts';

const arg = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const endpoints = arg('endpoints', 200);
const concurrency = arg('concurrency', 8);
const controllerConcurrency = arg('controller-concurrency', 8);
const apiVersion = 'ml-operator.dev/v1alpha1';

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
const endpointName = (i: number) => `e${String(i).padStart(4, '0')}`;

/** Runs `work` over 0..count-1 with at most `limit` at once. */
async function pool(count: number, limit: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, count) }, async () => {
    while (next < count) await work(next++);
  }));
}

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
  const operatorConfig = parseConfig(await chartConfig(admin), 'chart ConfigMap');

  // Lower bound: what a minimal client that already knows the answer must do.
  const direct = 'bench-direct';
  await client.create(resources.namespace, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: direct } });
  log(`bench: lower bound: applying the objects of ${endpoints} endpoints directly`);
  const directStarted = Date.now();
  writes = 0;
  await pool(endpoints, concurrency, async (i) => {
    const endpoint: MachineLearningEndpoint = { metadata: { name: endpointName(i), namespace: direct, uid: '00000000-0000-0000-0000-000000000000' }, spec: { config: 'ab' } };
    const resolution = planFromTemplates(endpointName(i), 'ab', config, new Map(Object.entries(models)));
    if (!resolution.ok) throw new Error('unresolved');
    const ctx = { endpoint, config: operatorConfig };
    const provider = routingProvider(operatorConfig);
    const route = { host: desired.hostOf(ctx), backends: backends([{ plan: resolution.plan, percent: 100 }]) };
    const objects = [...provider.gateways(ctx), ...resolution.plan.variants.flatMap((v) => desired.workloads(ctx, v, 600)), ...provider.routes(ctx, route)];
    for (const d of objects) {
      delete d.object.metadata.ownerReferences;
      await client.apply(d.resource, d.object);
    }
  });
  const directWrites = writes;
  await waitFor('every directly applied Deployment to be Available', 600_000, async () => {
    const { items } = await client.list<KubeObject & { status?: { readyReplicas?: number } }>(resources.deployment, direct);
    return items.length === endpoints * 2 && items.every((d) => (d.status?.readyReplicas ?? 0) >= 1) ? true : undefined;
  });
  const directSeconds = (Date.now() - directStarted) / 1000;
  log(`bench: lower bound: ${directSeconds.toFixed(1)}s, ${(directWrites / endpoints).toFixed(1)} writes per endpoint`);

  // The controller: templates first, then N endpoints at once.
  const ns = 'bench-controller';
  await client.create(resources.namespace, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const controller = await startControllerProcess({
    kubeconfig: await serviceAccountKubeconfig(admin),
    config: await chartConfig(admin),
    namespaces: [ns],
    concurrency: controllerConcurrency,
  });
  for (const [name, spec] of Object.entries(models)) await client.apply(resources.model, { apiVersion, kind: 'MachineLearningModel', metadata: { name, namespace: ns }, spec });
  await client.apply(resources.endpointConfig, { apiVersion, kind: 'MachineLearningEndpointConfig', metadata: { name: 'ab', namespace: ns }, spec: config });
  const writesBefore = await controllerWrites();
  log(`bench: controller: creating ${endpoints} endpoints at once`);
  const started = Date.now();
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rss(controller.child.pid!))), 250);
  await pool(endpoints, concurrency, (i) => client.apply(resources.endpoint, { apiVersion, kind: 'MachineLearningEndpoint', metadata: { name: endpointName(i), namespace: ns }, spec: { config: 'ab' } }));
  let lastCount = -1;
  await waitFor('every endpoint to be InService', 900_000, async () => {
    const { items } = await client.list<MachineLearningEndpoint & KubeObject>(resources.endpoint, ns);
    const count = items.filter((e) => e.status?.state === 'InService' && e.status.ready === '2/2').length;
    if (count !== lastCount) log(`bench: ${count}/${endpoints} InService after ${((Date.now() - started) / 1000).toFixed(1)}s`);
    lastCount = count;
    return count === endpoints ? true : undefined;
  });
  const seconds = (Date.now() - started) / 1000;
  // Let the last status writes land before counting.
  await waitFor('the work queue to drain', 60_000, async () => (/^ml_operator_workqueue_depth 0$/m.test(await controller.metrics()) ? true : undefined));
  clearInterval(sampler);
  peakRss = Math.max(peakRss, peakRssOf(controller.child.pid!));
  const controllerWriteCount = (await controllerWrites()) - writesBefore;
  await controller.stop();

  // Every endpoint answers through the gateway: one request each (the gateway may take a moment to serve the last routes).
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
  const served = answers.filter((a) => a.status === 200 && a.backend?.instance).length;
  const traffic = report(answers, 0);

  const objectsPerEndpoint = 8; // HTTPRoute, config snapshot, 2 model snapshots, 2 Deployments, 2 Services
  process.stdout.write(
    [
      '',
      `ml-operator benchmark: ${endpoints} endpoints x 2 variants, created at once (client concurrency ${concurrency}, controller --concurrency=${controllerConcurrency})`,
      `  controller: all InService in ${seconds.toFixed(1)}s; ${(controllerWriteCount / endpoints).toFixed(1)} write requests per endpoint (objects it creates: ${objectsPerEndpoint}, plus status updates); peak RSS ${(peakRss / 1024).toFixed(0)} MiB`,
      `  lower bound (same Deployments, Services and HTTPRoute applied directly): ${directSeconds.toFixed(1)}s; ${(directWrites / endpoints).toFixed(1)} writes per endpoint`,
      `  through the gateway: ${served}/${endpoints} endpoints answered by a model; statuses ${JSON.stringify(traffic.byStatus)}; latency p50 ${traffic.latency.p50.toFixed(1)} ms, p99 ${traffic.latency.p99.toFixed(1)} ms`,
      `  ratio controller / lower bound: ${(seconds / directSeconds).toFixed(2)}x (target <= 1.5x)`,
      '',
    ].join('\n') + '\n',
  );

  async function controllerWrites(): Promise<number> {
    const text = await controller.metrics();
    return [...text.matchAll(/^ml_operator_api_writes_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  }
} finally {
  await cluster.stop();
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
