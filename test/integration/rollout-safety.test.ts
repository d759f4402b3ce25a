// What a pending version may and may not do to the serving one, what Ready means, and what a version
// that failed or was abandoned leaves behind, against the real API server and under real traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { waitFor } from '../../ci/wait.ts';
import { resources } from '../../controller/src/kube/resources.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  getEndpoint,
  inService,
  k8s,
  list,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import { expectServed, installGatewayRelease, load, printReport, uninstallRelease, waitForGateway } from './traffic.ts';
import { servedModel } from './fixtures.ts';

let namespace: string;
let release: Release;
let controller: ControllerProcess;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'rollout-safety');
  release = await installGatewayRelease(namespace, 'shared');
  controller = await runController([namespace], { release });
});
afterAll(async () => {
  await controller?.stop();
  await deleteNamespace(admin, namespace);
  if (release) await uninstallRelease(release);
});

const model = servedModel('safety');
const core = () => admin.makeApiClient(k8s.CoreV1Api);
const podsOf = async (instance: string) =>
  (await core().listNamespacedPod({ namespace, labelSelector: `ml-operator.dev/model-instance=${instance}` })).items;
const replicasOf = async (name: string) =>
  (
    (await list(resources.deployment, namespace)).find((d) => d.metadata.name === name)?.spec as
      { replicas?: number } | undefined
  )?.replicas;
const reason = (e: { status?: { conditions?: { type: string; reason: string }[] } }, type: string) =>
  e.status?.conditions?.find((c) => c.type === type)?.reason;

describe('a pending version (finding 4)', () => {
  it('never takes replicas from the serving version: instances 4 -> 1 with a variant that never gets ready', async () => {
    await applyModel(namespace, 'big', model('acme/big:1'));
    await applyModel(namespace, 'broken', model('acme/broken:1', { DEMO_READY: 'false' }));
    await applyConfig(namespace, 'c4', { models: [{ model: 'big', instances: 4 }] });
    // The default progress deadline while the first version comes up: 15 s failed 4 pods that a busy
    // machine started slowly. Only the version that never gets ready is given 15 s.
    await applyEndpoint(namespace, 'e4', { config: 'c4', rollout: { drainSeconds: 2 } });
    const serving = await waitForEndpoint(
      namespace,
      'e4',
      'InService with 4 replicas',
      (x) => inService(x) && x.status!.ready === '4/4',
      90_000,
    );
    const instance = serving.status!.traffic![0].service;
    await waitForGateway(`e4.${namespace}.models.example.com`);
    const before = (await podsOf(instance)).map((p) => p.metadata!.uid).sort();
    await applyEndpoint(namespace, 'e4', { config: 'c4', rollout: { drainSeconds: 2, progressDeadlineSeconds: 15 } });
    const run = load(`e4.${namespace}.models.example.com`, {
      requests: 3000,
      rate: 40,
      concurrency: 128,
      maxDurationMs: 60_000,
      sleepMs: (i) => (i % 5 === 0 ? 1000 : 0),
    });
    await applyConfig(namespace, 'c4', {
      models: [
        { model: 'big', instances: 1, weight: 90 },
        { model: 'broken', weight: 10 },
      ],
    });
    await waitForEndpoint(
      namespace,
      'e4',
      'the new version past its deadline',
      (x) => reason(x, 'Progressing') === 'ProgressDeadlineExceeded',
      60_000,
    );
    run.stop();
    const r = await run.done;
    printReport('instances 4 -> 1 beside a version that never gets ready', r);
    expect(await replicasOf(instance)).toBe(4);
    expect((await podsOf(instance)).map((p) => p.metadata!.uid).sort()).toEqual(before);
    expectServed(run, { backends: [instance], namespace });
  });
});

describe('a version that failed or was abandoned (finding 6)', () => {
  it('past its deadline, is scaled to zero with its snapshots kept, and tried again on a new attempt', async () => {
    const e = await getEndpoint(namespace, 'e4');
    // A version that failed is pending no more: status.rollout names it.
    expect(e.status!.pendingEndpointConfigVersion).toBeUndefined();
    expect(e.status!.rollout).toMatchObject({ phase: 'Failed' });
    const failed = e.status!.rollout!.version!;
    const brokenInstance = (await list(resources.deployment, namespace))
      .map((d) => d.metadata.name)
      .find((n) => n.startsWith('broken-'))!;
    await waitFor('the failed version scaled to zero', 30_000, async () =>
      (await replicasOf(brokenInstance)) === 0 && (await podsOf(brokenInstance)).length === 0 ? true : undefined,
    );
    const snapshots = (await list(resources.endpointConfig, namespace)).map(
      (c) => c.metadata.labels?.['ml-operator.dev/version'],
    );
    expect(snapshots).toContain(failed);
    await applyEndpoint(namespace, 'e4', {
      config: 'c4',
      rollout: { drainSeconds: 2, progressDeadlineSeconds: 15, attempt: 2 },
    });
    // The Deployment is written before the status, so wait for both.
    await waitFor('the retried version running again', 30_000, async () =>
      (await replicasOf(brokenInstance)) === 1 ? true : undefined,
    );
    await waitForEndpoint(
      namespace,
      'e4',
      'the retried version deploying',
      (x) => reason(x, 'Progressing') === 'NewVersionDeploying',
      30_000,
    );
  });

  it('whose templates are deleted while it is pending, is removed rather than leaked', async () => {
    await waitForEndpoint(
      namespace,
      'e4',
      'deploying or failed again',
      (x) => x.status?.pendingEndpointConfigVersion !== undefined || x.status?.rollout?.phase === 'Failed',
    );
    const brokenInstance = (await list(resources.deployment, namespace))
      .map((d) => d.metadata.name)
      .find((n) => n.startsWith('broken-'))!;
    await user.delete(resources.endpointConfig, namespace, 'c4');
    const e = await waitForEndpoint(
      namespace,
      'e4',
      'ConfigNotFound, still serving',
      (x) => reason(x, 'TemplatesAvailable') === 'ConfigNotFound' && x.status?.state === 'InService',
    );
    expect(e.status!.pendingEndpointConfigVersion).toBeUndefined();
    await waitFor('the abandoned version removed', 30_000, async () =>
      (await replicasOf(brokenInstance)) === undefined ? true : undefined,
    );
  });
});

describe('Ready (finding 5)', () => {
  it('is Degraded, with counts, when the serving version has fewer ready replicas than wanted', async () => {
    await applyModel(namespace, 'two', model('acme/two:1'));
    await applyConfig(namespace, 'c2', { models: [{ model: 'two', instances: 2 }] });
    await applyEndpoint(namespace, 'e2', { config: 'c2' });
    const serving = await waitForEndpoint(
      namespace,
      'e2',
      'InService',
      (x) => inService(x) && x.status!.ready === '2/2',
      90_000,
    );
    const instance = serving.status!.traffic![0].service;
    // A quota that holds back the replacement of a pod that goes away.
    const running = (await core().listNamespacedPod({ namespace })).items.filter(
      (p) => !p.metadata!.deletionTimestamp,
    ).length;
    await core().createNamespacedResourceQuota({
      namespace,
      body: { metadata: { name: 'hold' }, spec: { hard: { pods: String(running - 1) } } },
    });
    const [victim] = await podsOf(instance);
    await core().deleteNamespacedPod({ name: victim.metadata!.name!, namespace });
    const degraded = await waitForEndpoint(
      namespace,
      'e2',
      'Degraded',
      (x) => reason(x, 'Ready') === 'Degraded',
      60_000,
    );
    expect(degraded.status!.conditions!.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      message: expect.stringContaining('two 1/2 ready'),
    });
    expect(degraded.status!.state).toBe('InService');
    expect(degraded.status!.ready).toBe('1/2');
    await core().deleteNamespacedResourceQuota({ name: 'hold', namespace });
    await waitForEndpoint(namespace, 'e2', 'Ready again', (x) => inService(x) && x.status!.ready === '2/2', 60_000);
  });
});
