import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { autoscalerResource } from '../desired/autoscaling.ts';
import { labels, storageFinalizer } from '../desired/labels.ts';
import * as desired from '../desired/objects.ts';
import { resources } from '../kube/resources.ts';
import { routingProvider } from '../routing/providers.ts';
import { Applier } from './apply.ts';
import { HostPathStorage } from './hostpath.ts';
import { StatusWriter } from './status-writer.ts';
import { namespace, serveFirstVersion, setUp } from './testing/fixtures.ts';

describe('hostPath storage and the finalizer', () => {
  it('removes the model files on every node that holds them before it lets a deleted endpoint go', async () => {
    const t = setUp((c) => (c.storage.mode = 'hostPath'));
    await serveFirstVersion(t, {});
    expect(t.endpoint().metadata.finalizers).toEqual([storageFinalizer]);
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
    const applier = new Applier({
      client: t.cluster,
      caches: t.cluster.caches,
      provider: routingProvider(t.config),
      autoscalerResource: autoscalerResource(t.config),
    });
    const status = new StatusWriter({ client: t.cluster, caches: t.cluster.caches, events: t.recorder, now: t.now });
    const storage = new HostPathStorage({
      client: t.cluster,
      caches: t.cluster.caches,
      config: t.config,
      logger: pino({ level: 'silent' }),
      applier,
      status,
    });

    const live = t.cluster.caches.endpoints.get(namespace, 'iris')!;
    const deleting = { ...live, metadata: { ...live.metadata, deletionTimestamp: t.now().toISOString() as never } };
    expect(await storage.finalize(deleting)).toEqual({ requeueAfterMs: 30_000 });
    const cleanup = desired.cleanupPodName(instance, 'node-1');
    expect(t.cluster.read(resources.pod, namespace, cleanup)).toMatchObject({ spec: { nodeName: 'node-1' } });
    expect(t.endpoint().metadata.finalizers).toEqual([storageFinalizer]);
    expect(t.endpoint().status?.state).toBe('Deleting');

    await t.cluster.applyStatus(resources.pod, {
      metadata: { name: cleanup, namespace },
      status: { phase: 'Succeeded' },
    });
    expect(await storage.finalize(deleting)).toBeUndefined();
    expect(t.cluster.read(resources.persistentVolumeClaim, namespace, instance)).toBeUndefined();
    expect(t.cluster.read(resources.pod, namespace, cleanup)).toBeUndefined();
    expect(t.endpoint().metadata.finalizers).toEqual([]);
  });
});
