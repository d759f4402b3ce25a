// A controller upgrade as `helm upgrade` performs it, under load: the chart renders a new controller
// image (which is also the artifact fetcher's), and the Deployment's rolling update starts the new
// controller before it stops the old one. No model pod may restart and no request may fail.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { installChart, type ControllerProcess, type Release } from '../../ci/cluster/operator.ts';
import { waitFor } from '../../ci/wait.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import { admin, applyConfig, applyEndpoint, applyModel, artifact, inService, k8s, runController, waitForEndpoint } from './ml.ts';
import { backendsOf, expectServed, installGatewayRelease, load, printReport, uninstallRelease, waitForGateway } from './traffic.ts';

let namespace: string;
let release: Release & { values: string[] };
const controllers: ControllerProcess[] = [];

beforeAll(async () => {
  namespace = await createNamespace(admin, 'upgrade');
  release = await installGatewayRelease(namespace, 'shared');
});
afterAll(async () => {
  for (const c of controllers) await c.stop();
  await deleteNamespace(admin, namespace);
  if (release) await uninstallRelease(release);
});

async function pods(): Promise<{ name: string; uid: string; restarts: number }[]> {
  const list = await admin.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace });
  return list.items
    .map((p) => ({ name: p.metadata!.name!, uid: p.metadata!.uid!, restarts: (p.status?.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0) }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

describe('a controller upgrade', () => {
  it('restarts no model pod and fails no request, with the new controller standing by until the old one leaves', async () => {
    const first = await runController([namespace], { release, leaderElect: true, identity: 'controller-0.1.0' });
    controllers.push(first);
    await applyModel(namespace, 'm', { image: 'acme/m:1', artifact: artifact('upgrade'), readinessPath: '/healthz' });
    await applyConfig(namespace, 'c', { models: [{ model: 'm', instances: 2 }] });
    await applyEndpoint(namespace, 'e', { config: 'c' });
    const serving = await waitForEndpoint(namespace, 'e', 'InService', inService, 90_000);
    const before = await pods();
    expect(before).toHaveLength(2);
    await waitForGateway(`e.${namespace}.models.example.com`);

    const run = load(`e.${namespace}.models.example.com`, { requests: 3000, rate: 50, concurrency: 128, maxDurationMs: 60_000, sleepMs: (i) => (i % 10 === 0 ? 1000 : 0) });
    // helm upgrade to a new controller image: the chart's config now names a new fetcher image.
    await installChart(inject('kubeconfigPath'), [...release.values, 'controller.image.tag=0.2.0'], release);
    const second = await runController([namespace], { release, leaderElect: true, identity: 'controller-0.2.0' });
    controllers.push(second);
    expect(second.logs()).not.toContain('became leader');
    await first.stop();
    await waitFor('the new controller to lead', 30_000, async () => (second.logs().includes('became leader') ? true : undefined));
    // Give it a full pass over the endpoint: its status is rewritten only if something changed.
    await waitFor('the new controller to reconcile the endpoint', 30_000, async () => (/ml_operator_reconcile_total\{result="success"\} [1-9]/.test(await second.metrics()) ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 3000));
    run.stop();
    const r = await run.done;
    printReport('controller upgrade', r);

    const after = await pods();
    process.stdout.write(`[upgrade] model pods before ${before.map((p) => p.name).join(', ')}; after ${after.map((p) => p.name).join(', ')}\n`);
    expect(after).toEqual(before);
    expectServed(run, { backends: backendsOf(serving), namespace });
    const e = await waitForEndpoint(namespace, 'e', 'InService', inService);
    expect(e.status!.endpointConfigVersion).toBe(serving.status!.endpointConfigVersion);
  });
});
