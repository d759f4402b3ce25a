// Writes the objects a reconcile wants, and never one that is not the endpoint's: server-side apply
// only when the live object differs, an ownership check on every object first (someone else's
// namesake is a conflict, reported, never overwritten), and the hand-over of an autoscaled
// Deployment's replicas to its autoscaler.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { replicasFieldManager } from '../desired/autoscaling.ts';
import { upToDate } from '../desired/compare.ts';
import { replicasOwnerAnnotation } from '../desired/labels.ts';
import type * as desired from '../desired/objects.ts';
import type { EndpointContext } from '../desired/common.ts';
import { resources, type KubeObject, type Resource } from '../kube/resources.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { ownedBy, type Caches, type ClusterClient, type Store } from './caches.ts';
import { indexes, keyOf } from './indexes.ts';

export class Applier {
  private readonly deps: {
    client: ClusterClient;
    caches: Caches;
    provider: RoutingProvider;
    autoscalerResource: Resource;
  };

  constructor(deps: {
    client: ClusterClient;
    caches: Caches;
    provider: RoutingProvider;
    autoscalerResource: Resource;
  }) {
    this.deps = deps;
  }

  storeFor(resource: Resource): Store<KubeObject> | undefined {
    const { caches } = this.deps;
    const stores: [Resource | undefined, Store<KubeObject> | undefined][] = [
      [resources.deployment, caches.deployments],
      [resources.service, caches.services],
      [resources.persistentVolumeClaim, caches.claims],
      [resources.persistentVolume, caches.volumes],
      [resources.pod, caches.pods],
      [this.deps.provider.kinds.gateway, caches.gateways],
      [this.deps.provider.kinds.route, caches.routes],
      [this.deps.provider.kinds.auxiliary?.resource, caches.auxiliary],
      [this.deps.autoscalerResource, caches.autoscalers],
      [resources.podDisruptionBudget, caches.disruptionBudgets],
      [resources.endpointConfig, caches.configs],
      [resources.model, caches.models],
    ];
    return stores.find(([r]) => r?.plural === resource.plural && r.group === resource.group)?.[1];
  }

  /**
   * Applies a desired object unless the live one already matches, and never writes over an object
   * that is not this endpoint's: returns false (a conflict) instead. The caches hold only what the
   * controller labels as its own, so an object they do not show is read first: a namesake that
   * someone else made is left as it is.
   */
  async ensure(endpoint: MachineLearningEndpoint, d: desired.Desired): Promise<boolean> {
    const { namespace, name } = d.object.metadata;
    const live =
      this.storeFor(d.resource)?.get(namespace, name) ??
      (await this.deps.client.get<KubeObject>(d.resource, namespace, name));
    if (live && !ownedBy(endpoint, live)) return false;
    if (upToDate(live, d.object)) return true;
    if (d.initialReplicas !== undefined) {
      await this.handOverReplicas(d, live);
      return true;
    }
    await this.deps.client.apply(d.resource, d.object);
    return true;
  }

  /**
   * Writes a Deployment whose replicas an autoscaler owns, without ever resetting them: a new one is
   * created at its starting count; then (and for one that had fixed replicas) a second field manager
   * takes a share of spec.replicas, so that the controller's own apply can leave the field out and
   * the count stays where the autoscaler (or the start) put it.
   */
  private async handOverReplicas(d: desired.Desired, live: KubeObject | undefined): Promise<void> {
    const { client } = this.deps;
    const { namespace, name } = d.object.metadata;
    const spec = d.object.spec as Record<string, unknown>;
    // Never fewer than the start: an autoscaler does not scale up a Deployment at zero (a version
    // that failed before and is tried again).
    const replicas = Math.max((live?.spec as { replicas?: number } | undefined)?.replicas ?? 0, d.initialReplicas!);
    if (!live) await client.apply(d.resource, { ...d.object, spec: { ...spec, replicas } });
    // Once the controller's own apply carries the mark, the field is shared and left to the autoscaler.
    if (live?.metadata.annotations?.[replicasOwnerAnnotation] !== 'autoscaler') {
      await client.apply(
        d.resource,
        { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace }, spec: { replicas } },
        replicasFieldManager,
      );
    }
    await client.apply(d.resource, d.object);
  }

  describeConflict(d: desired.Desired): string {
    const { namespace, name } = d.object.metadata;
    return `${d.resource.kind} ${namespace ? `${namespace}/` : ''}${name} exists and does not belong to this endpoint; ml-operator never writes over an object it does not own: delete or rename that object (or rename the endpoint or model)`;
  }

  /**
   * Deletes this endpoint's gateways and route objects (when another endpoint holds its host, or it
   * is deleted) as the caches hold them; returns how many of those that name backends (routes and
   * auxiliary objects, not gateways) it deleted. One already being deleted (another finalizer holds
   * it) is neither deleted again nor counted.
   */
  async removeRouting(endpoint: MachineLearningEndpoint): Promise<number> {
    const { caches, client } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const stores: [Resource | undefined, Store<KubeObject> | undefined, boolean][] = [
      [this.deps.provider.kinds.route, caches.routes, true],
      [this.deps.provider.kinds.auxiliary?.resource, caches.auxiliary, true],
      [this.deps.provider.kinds.gateway, caches.gateways, false],
    ];
    let removed = 0;
    for (const [resource, store, namesBackends] of stores) {
      if (!resource || !store) continue;
      for (const o of store.byIndex(indexes.endpoint, keyOf(namespace, endpoint.metadata.name!))) {
        if (!ownedBy(endpoint, o) || o.metadata.deletionTimestamp) continue;
        const deleted = await client.delete(resource, namespace, o.metadata.name, { uid: o.metadata.uid });
        if (deleted && namesBackends) removed++;
      }
    }
    return removed;
  }

  /**
   * Whether the endpoint's route object exists, read from the API server (a route written just
   * before a deletion may not be in the caches yet); deletes it if so.
   */
  async removeLiveRoute(ctx: EndpointContext): Promise<boolean> {
    const { client, provider } = this.deps;
    const { endpoint } = ctx;
    const namespace = endpoint.metadata.namespace!;
    const live = await client.get(provider.kinds.route, namespace, provider.routeName(ctx));
    if (!live || !ownedBy(endpoint, live)) return false;
    if (!live.metadata.deletionTimestamp)
      await client.delete(provider.kinds.route, namespace, live.metadata.name, { uid: live.metadata.uid });
    return true;
  }
}
