// Garbage collection of an endpoint's own objects: the workloads of model instances the rollout no
// longer keeps, their autoscalers and disruption budgets, and the snapshots of versions it no longer
// keeps. Only ever what the decision let go: what the live route references is always kept.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { labels } from '../desired/labels.ts';
import { resources, type KubeObject, type Resource } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import type { Caches, ClusterClient } from './caches.ts';
import type { HostPathStorage } from './hostpath.ts';
import { indexes, keyOf } from './indexes.ts';
import type { StatusWriter } from './status-writer.ts';

export interface GarbageDeps {
  client: ClusterClient;
  caches: Caches;
  config: OperatorConfig;
  provider: RoutingProvider;
  autoscalerResource: Resource;
  status: StatusWriter;
  hostPath: HostPathStorage;
}

/** What stays: the decision's instances and versions, and the autoscalers and budgets still wanted. */
export interface Kept {
  keepInstances: Set<string>;
  keepVersions: Set<string>;
  keepAutoscalers: Set<string>;
  keepBudgets: Set<string>;
}

/**
 * Deletes the endpoint's workloads of instances the rollout no longer keeps, and its snapshots of
 * versions it no longer keeps. What the live route references is always among the kept.
 */
export async function collectGarbage(deps: GarbageDeps, endpoint: MachineLearningEndpoint, keep: Kept): Promise<void> {
  const { keepInstances, keepVersions, keepAutoscalers, keepBudgets } = keep;
  const { caches, client, provider, autoscalerResource } = deps;
  const namespace = endpoint.metadata.namespace!;
  const name = endpoint.metadata.name!;
  const uid = endpoint.metadata.uid!;
  const ours = (o: KubeObject) => o.metadata.ownerReferences?.some((r) => r.uid === uid);
  const key = keyOf(namespace, name);
  const deletions: Promise<unknown>[] = [];
  const remove = (r: Resource, o: KubeObject) => {
    deps.status.forgetSnapshot(key, r, o.metadata.name);
    deletions.push(
      client.delete(r, o.metadata.namespace, o.metadata.name, { propagationPolicy: 'Background', uid: o.metadata.uid }),
    );
  };

  const gone = (o: KubeObject) => ours(o) && !keepInstances.has(o.metadata.labels?.[labels.modelInstance] ?? '');
  for (const [resource, store] of [
    [resources.deployment, caches.deployments],
    [resources.service, caches.services],
  ] as const) {
    for (const o of store.byIndex(indexes.endpoint, key)) if (gone(o)) remove(resource, o);
  }
  // Auxiliary route objects go with their Service.
  if (provider.kinds.auxiliary)
    for (const o of caches.auxiliary?.byIndex(indexes.endpoint, key) ?? [])
      if (gone(o)) remove(provider.kinds.auxiliary.resource, o);
  // Autoscalers go with their Deployment, and when their variant no longer scales (or failed).
  for (const o of caches.autoscalers?.byIndex(indexes.endpoint, key) ?? [])
    if (ours(o) && !keepAutoscalers.has(o.metadata.name)) remove(autoscalerResource, o);
  // Disruption budgets go with their version, and when their variant is down to one replica.
  for (const o of caches.disruptionBudgets?.byIndex(indexes.endpoint, key) ?? [])
    if (ours(o) && !keepBudgets.has(o.metadata.name)) remove(resources.podDisruptionBudget, o);
  // A claim already being deleted has been cleaned up: its pods are ending, its volume follows.
  const claims = caches.claims.byIndex(indexes.endpoint, key).filter((c) => gone(c) && !c.metadata.deletionTimestamp);
  if (deps.config.storage.mode === 'hostPath') {
    // The files stay on the nodes unless removed: a clean-up pod first, then the claim and the volume.
    deletions.push(...claims.map((c) => deps.hostPath.cleanUp(endpoint, c)));
  } else {
    for (const c of claims) remove(resources.persistentVolumeClaim, c);
  }

  const configSnapshots = caches.configs.byIndex(indexes.endpoint, key).filter(ours);
  const keptConfigs = configSnapshots.filter((c) => keepVersions.has(c.metadata.labels?.[labels.version] ?? ''));
  for (const c of configSnapshots) if (!keptConfigs.includes(c)) remove(resources.endpointConfig, c);
  // Model snapshots are shared between config versions: keep every one a kept config refers to.
  if (keptConfigs.every((c) => c.status?.modelVersions)) {
    const keptModels = new Set([
      ...keepInstances,
      ...keptConfigs.flatMap((c) => c.status!.modelVersions!.map((m) => m.instance ?? '')),
    ]);
    for (const m of caches.models.byIndex(indexes.endpoint, key)) {
      if (ours(m) && !keptModels.has(m.metadata.name)) remove(resources.model, m);
    }
  }
  await Promise.all(deletions);
}
