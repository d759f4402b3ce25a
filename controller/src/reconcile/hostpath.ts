// What owner references cannot reach: the model files of hostPath storage on the nodes (a clean-up
// pod per node, through the instance's claim) and the cluster-scoped volumes, removed before the
// storage finalizer lets a deleted endpoint go (deletion.ts), and when a version is collected.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { labels } from '../desired/labels.ts';
import * as desired from '../desired/objects.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { ReconcileResult } from '../runtime/queue.ts';
import type { Applier } from './apply.ts';
import { ownedBy, type Caches, type ClusterClient } from './caches.ts';
import { indexes, keyOf } from './indexes.ts';

export interface HostPathDeps {
  client: ClusterClient;
  caches: Caches;
  config: OperatorConfig;
  logger: Logger;
  applier: Applier;
}

export class HostPathStorage {
  private readonly deps: HostPathDeps;

  constructor(deps: HostPathDeps) {
    this.deps = deps;
  }

  /**
   * Owner references delete everything namespaced; what they cannot reach (hostPath files on the
   * nodes, cluster-scoped volumes) is removed before the finalizer lets a deleted endpoint go.
   * Undefined once all of it is gone; else when to look again.
   */
  async removeFiles(endpoint: MachineLearningEndpoint): Promise<ReconcileResult> {
    const namespace = endpoint.metadata.namespace!;
    const name = endpoint.metadata.name!;
    const claims = this.deps.caches.claims
      .byIndex(indexes.endpoint, keyOf(namespace, name))
      .filter((c) => ownedBy(endpoint, c) && !c.metadata.deletionTimestamp);
    const done = await Promise.all(claims.map((c) => this.cleanUp(endpoint, c)));
    this.deps.logger.debug(
      { endpoint: `${namespace}/${name}`, claims: claims.map((c) => c.metadata.name), done },
      'removing what owner references cannot reach',
    );
    // Clean-up pods run: their end (a pod event) brings the endpoint back here.
    if (done.some((d) => !d)) return { requeueAfterMs: 30_000 };
    const volumes = this.deps.caches.volumes?.byIndex(indexes.endpoint, keyOf(namespace, name)) ?? [];
    await Promise.all(
      volumes.map((v) =>
        this.deps.client.delete(resources.persistentVolume, undefined, v.metadata.name, { uid: v.metadata.uid }),
      ),
    );
    return undefined;
  }

  /**
   * Nodes that hold a hostPath model instance's files: those its claim recorded, and those its pods
   * run on now (hostPath mode watches the endpoint's pods). Empty in the other storage modes.
   */
  hostNodes(namespace: string, instance: string): string[] {
    const { caches } = this.deps;
    if (!caches.pods) return [];
    const running = caches.pods
      .list(namespace)
      .filter(
        (p) =>
          p.metadata.labels?.[labels.modelInstance] === instance &&
          p.metadata.labels?.[labels.component] === 'model-server',
      )
      .map((p) => (p.spec as { nodeName?: string }).nodeName)
      .filter((n): n is string => !!n);
    return [...new Set([...desired.hostNodesOf(caches.claims.get(namespace, instance)), ...running])].sort();
  }

  /**
   * Removes a hostPath model instance: its files on every node that holds them (a clean-up pod
   * each, through the claim), then the pods, the claim and the volume. True once nothing is left.
   */
  async cleanUp(endpoint: MachineLearningEndpoint, claim: KubeObject): Promise<boolean> {
    const { caches, client, config } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const nodes = this.hostNodes(namespace, claim.metadata.name);
    const pods = nodes.map((node) => ({ node, name: desired.cleanupPodName(claim.metadata.name, node) }));
    let pending = false;
    for (const { node, name } of pods) {
      const pod = caches.pods?.get(namespace, name) as (KubeObject & { status?: { phase?: string } }) | undefined;
      if (pod?.status?.phase === 'Succeeded') continue;
      pending = true;
      if (!pod)
        await this.deps.applier.ensure(endpoint, desired.cleanupPod(endpoint, claim, config.fetcher.image, node));
    }
    if (pending) return false;
    await Promise.all(pods.map(({ name }) => client.delete(resources.pod, namespace, name)));
    await client.delete(resources.persistentVolumeClaim, namespace, claim.metadata.name, { uid: claim.metadata.uid });
    await client.delete(
      resources.persistentVolume,
      undefined,
      desired.persistentVolumeName(namespace, claim.metadata.name),
    );
    return true;
  }
}
