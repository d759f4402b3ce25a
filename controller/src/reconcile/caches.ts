// What a reconcile reads and writes through: the informers' caches (one store per kind, with the
// indexes of indexes.ts) and the API server's client, as types, so that every seam of the reconciler
// can be tested over an in-memory cluster (testing/fake-cluster.ts).
import type { MachineLearningEndpoint, MachineLearningEndpointConfig, MachineLearningModel } from '../api/generated.ts';
import type { KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/resources.ts';
import { labels, managerName } from '../desired/labels.ts';

export type Endpoint = MachineLearningEndpoint & KubeObject;
export type Config = MachineLearningEndpointConfig & KubeObject;
export type Model = MachineLearningModel & KubeObject;

/** Read access to an informer's cache. */
export interface Store<T extends KubeObject> {
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
  /** The objects an index (indexes.ts) files under a value. */
  byIndex(index: string, value: string): T[];
}

export interface Caches {
  endpoints: Store<Endpoint>;
  configs: Store<Config>;
  models: Store<Model>;
  deployments: Store<KubeObject>;
  services: Store<KubeObject>;
  claims: Store<KubeObject>;
  volumes?: Store<KubeObject>;
  /** The clean-up pods of hostPath storage (hostPath mode only). */
  pods?: Store<KubeObject>;
  /** Gateways of the routing provider (none when routes attach to a shared gateway). */
  gateways?: Store<KubeObject>;
  /** Route objects of the routing provider (VirtualServices, HTTPRoutes). */
  routes: Store<KubeObject>;
  /** Objects besides routes that carry them (the provider's auxiliary objects), when the provider writes any. */
  auxiliary?: Store<KubeObject>;
  /** The autoscalers of autoscaled variants (HorizontalPodAutoscalers or KEDA ScaledObjects). */
  autoscalers?: Store<KubeObject>;
  /** The PodDisruptionBudgets of variants with more than one replica. */
  disruptionBudgets?: Store<KubeObject>;
}

/** What a reconcile asks of the API server: reads that the caches cannot answer, and writes. */
export type ClusterClient = Pick<KubeClient, 'get' | 'list' | 'apply' | 'applyStatus' | 'delete'>;

/** The object is this endpoint's: its controller owner reference names it (cluster-scoped objects: its labels do). */
export function ownedBy(endpoint: MachineLearningEndpoint, o: KubeObject): boolean {
  if (!o.metadata.namespace) {
    const l = o.metadata.labels ?? {};
    return (
      l[labels.managedBy] === managerName &&
      l[labels.endpoint] === endpoint.metadata.name &&
      l[labels.endpointNamespace] === endpoint.metadata.namespace
    );
  }
  return o.metadata.ownerReferences?.some((r) => r.controller && r.uid === endpoint.metadata.uid) ?? false;
}

/** The object an Event about the endpoint names. */
export function involved(endpoint: MachineLearningEndpoint): KubeObject & { apiVersion: string; kind: string } {
  return { ...(endpoint as KubeObject), apiVersion: 'ml-operator.dev/v1alpha1', kind: 'MachineLearningEndpoint' };
}
