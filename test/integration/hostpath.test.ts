// hostPath storage, the seed's original mode, end to end on the local cluster: model files on the
// nodes under the chart's root, volumes that never collide across namespaces, a variant path that
// stays under the root, and files removed from the nodes when their version goes or the endpoint is
// deleted (clean-up pods, then the claim and the cluster-scoped volume, the finalizer last).
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { waitFor } from '../../ci/wait.ts';
import { resources } from '../../controller/src/kube/resources.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  inService,
  list,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import { expectServed, installGatewayRelease, load, printReport, uninstallRelease, waitForGateway } from './traffic.ts';
import { servedModel } from './fixtures.ts';

const root = '/mnt/ml-operator';
let namespaces: string[];
let release: Release;
let controller: ControllerProcess;
const nodesDir = () => join(dirname(inject('kubeconfigPath')), 'data', 'nodes');
/** Files of a model instance on whichever nodes ran it. */
const onNodes = (relative: string) =>
  readdirSync(nodesDir()).filter((node) => existsSync(join(nodesDir(), node, root, relative)));

beforeAll(async () => {
  namespaces = [await createNamespace(admin, 'hostpath-a'), await createNamespace(admin, 'hostpath-b')];
  // What an administrator does once per node: the root, writable by the fetcher's user.
  for (let i = 0; i < 2; i++) mkdirSync(join(nodesDir(), `kwok-node-${i}`, root), { recursive: true });
  release = await installGatewayRelease(namespaces, 'shared', ['controller.config.storage.mode=hostPath']);
  controller = await runController(namespaces, { release });
});
afterAll(async () => {
  await controller?.stop();
  for (const ns of namespaces ?? []) await deleteNamespace(admin, ns);
  if (release) await uninstallRelease(release);
});

const model = servedModel('hostpath');

describe('hostPath storage', () => {
  it('serves from files on the nodes, one volume per namespace and instance, and a variant path under the root', async () => {
    for (const ns of namespaces) {
      await applyModel(ns, 'm', model('acme/m:1'));
      await applyConfig(ns, 'c', { models: [{ model: 'm', path: 'team-x' }] });
      await applyEndpoint(ns, 'e', { config: 'c', rollout: { drainSeconds: 2 } });
    }
    const served = await Promise.all(namespaces.map((ns) => waitForEndpoint(ns, 'e', 'InService', inService, 90_000)));
    // Same endpoint name, same model: the same instance name in both namespaces, and two volumes.
    const instance = served[0].status!.traffic![0].service;
    const volumes = (await list(resources.persistentVolume, ''))
      .map((v) => v.metadata.name)
      .filter((n) => n.endsWith(instance))
      .sort();
    expect(volumes).toEqual(namespaces.map((ns) => `ml-operator.${ns}.${instance}`).sort());
    for (const ns of namespaces) expect(onNodes(`team-x/${ns}/${instance}/model.json`).length).toBeGreaterThan(0);
    await waitForGateway(`e.${namespaces[0]}.models.example.com`);
    const run = load(`e.${namespaces[0]}.models.example.com`, { requests: 200, concurrency: 8, maxDurationMs: 30_000 });
    const r = await run.done;
    printReport('hostPath endpoint', r);
    expect(r.sent).toBe(200);
    expectServed(run, { backends: [instance], namespace: namespaces[0] });
  });

  it('removes the files, the claim and the volume of a version that goes', async () => {
    const [ns] = namespaces;
    const before = (await waitForEndpoint(ns, 'e', 'InService', inService)).status!.traffic![0].service;
    await applyModel(ns, 'm', model('acme/m:2'));
    await waitForEndpoint(
      ns,
      'e',
      'the new version serving',
      (x) => inService(x) && x.status!.traffic![0].service !== before && !x.status!.draining?.length,
      90_000,
    );
    await waitFor('the old files, claim and volume removed', 60_000, async () => {
      const claims = (await list(resources.persistentVolumeClaim, ns)).map((c) => c.metadata.name);
      const volumes = (await list(resources.persistentVolume, '')).map((v) => v.metadata.name);
      return !claims.includes(before) &&
        !volumes.includes(`ml-operator.${ns}.${before}`) &&
        onNodes(`team-x/${ns}/${before}`).length === 0
        ? true
        : undefined;
    });
    // The other namespace's files of the same instance name are untouched.
    expect(onNodes(`team-x/${namespaces[1]}/${before}/model.json`).length).toBeGreaterThan(0);
    expect((await list(resources.pod, ns)).filter((p) => p.metadata.name.endsWith('-cleanup'))).toEqual([]);
  });

  it('removes every file and volume of a deleted endpoint before it goes', async () => {
    const ns = namespaces[1];
    const serving = await waitForEndpoint(ns, 'e', 'InService', inService);
    const instance = serving.status!.traffic![0].service;
    // What owner references cannot reach (files on nodes, cluster-scoped volumes) holds the endpoint
    // until removed, after the drain every endpoint gets on deletion.
    expect(serving.metadata.finalizers).toEqual(['ml-operator.dev/drain', 'ml-operator.dev/storage']);
    await user.delete(resources.endpoint, ns, 'e');
    await waitFor('the endpoint gone', 90_000, async () =>
      (await user.get(resources.endpoint, ns, 'e')) ? undefined : true,
    );
    expect(onNodes(`team-x/${ns}/${instance}`)).toEqual([]);
    // The volume goes once its claim has (Kubernetes' protection finalizers wait for the pods to end).
    await waitFor('the volume removed', 90_000, async () =>
      (await list(resources.persistentVolume, '')).some((v) => v.metadata.name.startsWith(`ml-operator.${ns}.`))
        ? undefined
        : true,
    );
  });
});
