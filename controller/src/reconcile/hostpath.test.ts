import { describe, expect, it } from 'vitest';
import { drainFinalizer, labels, storageFinalizer } from '../desired/labels.ts';
import * as desired from '../desired/objects.ts';
import { resources } from '../kube/resources.ts';
import { key, namespace, serveFirstVersion, setUp } from './testing/fixtures.ts';

describe('hostPath storage and the finalizer', () => {
  it('removes the model files on every node that holds them before it lets a deleted endpoint go', async () => {
    const t = setUp((c) => (c.storage.mode = 'hostPath'));
    await serveFirstVersion(t, { drainSeconds: 5 });
    expect(t.endpoint().metadata.finalizers).toEqual([drainFinalizer, storageFinalizer]);
    const instance = t.endpoint().status!.traffic![0].service;
    // Its pod ran on node-1: the files are there.
    await t.cluster.create(resources.pod, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: `${instance}-x`,
        namespace,
        labels: { [labels.modelInstance]: instance, [labels.component]: 'model-server', [labels.endpoint]: 'iris' },
      },
      spec: { nodeName: 'node-1' },
    });

    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    // The drain first (deletion.test.ts), then the files.
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 5000 });
    t.advance(5);
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 30_000 });
    const cleanup = desired.cleanupPodName(instance, 'node-1');
    expect(t.cluster.read(resources.pod, namespace, cleanup)).toMatchObject({ spec: { nodeName: 'node-1' } });
    expect(t.endpoint().metadata.finalizers).toEqual([drainFinalizer, storageFinalizer]);
    expect(t.endpoint().status?.state).toBe('Deleting');

    await t.cluster.applyStatus(resources.pod, {
      metadata: { name: cleanup, namespace },
      status: { phase: 'Succeeded' },
    });
    expect(await t.reconciler.reconcile(key)).toBeUndefined();
    expect(t.cluster.read(resources.persistentVolumeClaim, namespace, instance)).toBeUndefined();
    expect(t.cluster.read(resources.pod, namespace, cleanup)).toBeUndefined();
    // Both finalizers lifted: the endpoint is gone.
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeUndefined();
  });
});
