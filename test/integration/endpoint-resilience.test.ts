// What goes wrong around an endpoint: templates missing or deleted, configs shared, the controller
// killed mid-rollout, a resync of a converged system.
import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceAccount, release, type ControllerProcess } from '../../ci/cluster/operator.ts';
import { waitFor } from '../../ci/wait.ts';
import { resources } from '../../controller/src/kube/resources.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  auditLogPath,
  getEndpoint,
  inService,
  list,
  runController,
  user,
  waitForEndpoint,
  writesSince,
  artifact,
} from './ml.ts';

const gcTimeoutMs = 90_000;
let namespace: string;
let controller: ControllerProcess;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'resilience');
  controller = await runController([namespace]);
});
afterAll(async () => {
  await controller?.stop();
  await deleteNamespace(admin, namespace);
});

const model = (image: string) => ({ image, artifact: artifact('m') });
const reason = (e: { status?: { conditions?: { type: string; reason: string }[] } }, type: string) =>
  e.status?.conditions?.find((c) => c.type === type)?.reason;
const names = async (r: (typeof resources)[keyof typeof resources]) =>
  (await list(r, namespace)).map((o) => o.metadata.name).sort();

describe('templates that are missing', () => {
  it('a missing config is reported, nothing is created, and its creation converges the endpoint', async () => {
    await applyEndpoint(namespace, 'early', { config: 'later' });
    const e = await waitForEndpoint(
      namespace,
      'early',
      'ConfigNotFound',
      (x) => reason(x, 'Ready') === 'ConfigNotFound',
    );
    expect(e.status!.state).toBe('Creating');
    expect(e.status!.conditions!.find((c) => c.type === 'Ready')!.message).toContain(
      `${namespace}/later does not exist`,
    );
    expect(await names(resources.deployment)).toEqual([]);
    expect(await names(resources.gateway)).toEqual([]);

    await applyConfig(namespace, 'later', { models: [{ model: 'late-model' }] });
    await waitForEndpoint(namespace, 'early', 'ModelNotFound', (x) => reason(x, 'Ready') === 'ModelNotFound');
    expect(await names(resources.deployment)).toEqual([]);
    await applyModel(namespace, 'late-model', model('acme/late:1'));
    await waitForEndpoint(namespace, 'early', 'InService', inService);
  });

  it('deleting a template in use leaves the endpoint serving from its snapshots, and says so', async () => {
    const serving = await getEndpoint(namespace, 'early');
    await user.delete(resources.endpointConfig, namespace, 'later');
    const e = await waitForEndpoint(
      namespace,
      'early',
      'TemplatesAvailable=False',
      (x) => reason(x, 'TemplatesAvailable') === 'ConfigNotFound',
    );
    expect(e.status!.state).toBe('InService');
    expect(e.status!.endpointConfigVersion).toBe(serving.status!.endpointConfigVersion);
    expect(e.status!.conditions!.find((c) => c.type === 'TemplatesAvailable')!.message).toContain(
      'serving from the snapshots',
    );
    expect(e.status!.conditions!.find((c) => c.type === 'Ready')!.status).toBe('True');
    expect(await names(resources.deployment)).toEqual(serving.status!.traffic!.map((t) => t.service));
    await user.delete(resources.model, namespace, 'late-model');
    await waitForEndpoint(
      namespace,
      'early',
      'still serving without its model',
      (x) => x.status?.state === 'InService',
    );
    await user.delete(resources.endpoint, namespace, 'early');
  });
});

describe('a config shared by two endpoints', () => {
  it('gives each endpoint its own instances; deleting one leaves the other untouched', async () => {
    await applyModel(namespace, 'shared-model', model('acme/shared:1'));
    await applyConfig(namespace, 'shared', { models: [{ model: 'shared-model', instances: 2 }] });
    await applyEndpoint(namespace, 'one', { config: 'shared' });
    await applyEndpoint(namespace, 'two', { config: 'shared' });
    const [one, two] = await Promise.all([
      waitForEndpoint(namespace, 'one', 'InService', inService),
      waitForEndpoint(namespace, 'two', 'InService', inService),
    ]);
    expect(one.status!.endpointConfigVersion).not.toBe(two.status!.endpointConfigVersion);
    expect(one.status!.traffic![0].service).not.toBe(two.status!.traffic![0].service);
    const twoObjects = async () =>
      (
        await Promise.all(
          [resources.deployment, resources.service, resources.virtualService, resources.gateway].map((r) =>
            list(r, namespace),
          ),
        )
      )
        .flat()
        .filter((o) => o.metadata.labels?.['ml-operator.dev/endpoint'] === 'two')
        .map((o) => `${o.kind}/${o.metadata.name}/${o.metadata.uid}`)
        .sort();
    const before = await twoObjects();
    await user.delete(resources.endpoint, namespace, 'one');
    // kube-controller-manager's garbage collector learns of CRDs installed after it started only at its
    // 30 s discovery resync, so right after start-up collection can take that long.
    await waitFor("endpoint one's objects to be collected", gcTimeoutMs, async () =>
      (await names(resources.deployment)).includes(one.status!.traffic![0].service) ? undefined : true,
    );
    expect(await twoObjects()).toEqual(before);
    expect((await getEndpoint(namespace, 'two')).status!.state).toBe('InService');
  });
});

describe('a host two endpoints claim', () => {
  it('an endpoint moved onto a served host gets HostConflict, and its Gateway and VirtualService go', async () => {
    await applyModel(namespace, 'host-model', model('acme/host:1'));
    await applyConfig(namespace, 'host', { models: [{ model: 'host-model' }] });
    await applyEndpoint(namespace, 'holder', { config: 'host', host: `held.${namespace}.example.com` });
    await applyEndpoint(namespace, 'mover', { config: 'host', host: `own.${namespace}.example.com` });
    await Promise.all(['holder', 'mover'].map((n) => waitForEndpoint(namespace, n, 'InService', inService)));
    expect((await names(resources.virtualService)).filter((n) => n === 'holder' || n === 'mover')).toEqual([
      'holder',
      'mover',
    ]);
    await applyEndpoint(namespace, 'mover', { config: 'host', host: `held.${namespace}.example.com` });
    const moved = await waitForEndpoint(
      namespace,
      'mover',
      'HostConflict',
      (x) => reason(x, 'Ready') === 'HostConflict',
    );
    expect(moved.status!.state).toBe('Failed');
    await waitFor("the mover's routing removed", 30_000, async () =>
      (await names(resources.virtualService)).includes('mover') || (await names(resources.gateway)).includes('mover-gw')
        ? undefined
        : true,
    );
    expect((await getEndpoint(namespace, 'holder')).status!.state).toBe('InService');
    for (const n of ['holder', 'mover']) await user.delete(resources.endpoint, namespace, n);
  });
});

describe('the controller', () => {
  it('killed mid-rollout and restarted converges on the same names with no duplicates or orphans', async () => {
    await applyModel(namespace, 'crash-model', model('acme/crash:1'));
    await applyConfig(namespace, 'crash', { models: [{ model: 'crash-model', instances: 2 }] });
    await applyEndpoint(namespace, 'crash', { config: 'crash', rollout: { drainSeconds: 2 } });
    const v1 = await waitForEndpoint(namespace, 'crash', 'InService', inService);
    await applyModel(namespace, 'crash-model', model('acme/crash:2'));
    await waitForEndpoint(
      namespace,
      'crash',
      'rolling out',
      (x) => x.status?.state === 'Updating' || x.status?.endpointConfigVersion !== v1.status!.endpointConfigVersion,
      30_000,
    );
    await controller.kill();
    controller = await runController([namespace]);
    const v2 = await waitForEndpoint(
      namespace,
      'crash',
      'the new version serving',
      (x) => inService(x) && x.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion,
      90_000,
    );
    const serviceName = v2.status!.traffic![0].service;
    await waitFor('only the new version to run', 30_000, async () => {
      const deployments = (await list(resources.deployment, namespace)).filter(
        (d) => d.metadata.labels?.['ml-operator.dev/endpoint'] === 'crash',
      );
      return deployments.length === 1 && deployments[0].metadata.name === serviceName ? true : undefined;
    });
    const snapshots = (await list(resources.endpointConfig, namespace)).filter(
      (c) => c.metadata.labels?.['ml-operator.dev/endpoint'] === 'crash',
    );
    expect(snapshots.map((c) => c.metadata.labels!['ml-operator.dev/version']).sort()).toEqual(
      [v1.status!.endpointConfigVersion, v2.status!.endpointConfigVersion].sort(),
    );
    const virtualServices = (await list(resources.virtualService, namespace)).filter(
      (v) => v.metadata.labels?.['ml-operator.dev/endpoint'] === 'crash',
    );
    expect(virtualServices).toHaveLength(1);
  });

  it('makes zero write requests when it resyncs a converged system', async () => {
    for (const name of ['two', 'crash']) await waitForEndpoint(namespace, name, 'InService', inService);
    await controller.stop();
    const offset = statSync(auditLogPath()).size;
    controller = await runController([namespace]);
    // A fresh process lists everything and reconciles every endpoint: wait until it has, then count.
    await waitFor('every endpoint reconciled', 30_000, async () => {
      const metrics = await controller.metrics();
      const done = Number(metrics.match(/^ml_operator_reconcile_total\{result="success"\} (\d+)/m)?.[1] ?? 0);
      const depth = Number(metrics.match(/^ml_operator_workqueue_depth (\d+)/m)?.[1] ?? 1);
      return done >= 2 && depth === 0 ? true : undefined;
    });
    const writes = await writesSince(offset, `system:serviceaccount:${release.namespace}:${serviceAccount}`, namespace);
    expect(writes).toEqual([]);
  });
});
