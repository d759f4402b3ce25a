// The informers: the three kinds, and everything the controller owns (by its managed-by label), in
// every watched namespace (one informer per namespace, or one for all), each read through one store.
import { managedBySelector } from '../desired/labels.ts';
import type { KubeClient } from '../kube/client.ts';
import { Informer, type Indexers, type InformerHandlers } from '../kube/informer.ts';
import { resources, type KubeObject, type Resource } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { Caches, Config, Endpoint, Model, Store } from '../reconcile/caches.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { configIndexers, endpointIndexers, modelIndexers, ownedIndexers } from '../reconcile/indexes.ts';

export type { Config, Endpoint, Model };

/** One informer per watched namespace (or one for all), read through one store. */
export class Watched<T extends KubeObject> implements Store<T> {
  readonly informers: Informer<T>[];
  private readonly byNamespace = new Map<string, Informer<T>>();

  constructor(make: (namespace: string | undefined) => Informer<T>, namespaces: string[] | undefined) {
    if (namespaces === undefined) {
      this.informers = [make(undefined)];
    } else {
      this.informers = namespaces.map((ns) => {
        const informer = make(ns);
        this.byNamespace.set(ns, informer);
        return informer;
      });
    }
  }

  private informerFor(namespace: string | undefined): Informer<T> | undefined {
    return this.byNamespace.size === 0
      ? this.informers[0]
      : namespace === undefined
        ? undefined
        : this.byNamespace.get(namespace);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.informerFor(namespace)?.get(namespace, name);
  }

  list(namespace?: string): T[] {
    if (namespace === undefined) return this.informers.flatMap((i) => i.list());
    return this.informerFor(namespace)?.list(namespace) ?? [];
  }

  byIndex(index: string, value: string): T[] {
    return this.informers.length === 1
      ? this.informers[0].byIndex(index, value)
      : this.informers.flatMap((i) => i.byIndex(index, value));
  }
}

/** What each source calls on events: handlers only map objects to keys and enqueue them. */
export interface SourceHandlers {
  endpoint: InformerHandlers<Endpoint>;
  config: InformerHandlers<Config>;
  model: InformerHandlers<Model>;
  owned: InformerHandlers<KubeObject>;
  volume: InformerHandlers<KubeObject>;
}

export interface Sources extends Caches {
  /** Every informer, to start, await and stop together. */
  informers: Informer<KubeObject>[];
}

export function buildSources(o: {
  client: KubeClient;
  logger: Logger;
  config: OperatorConfig;
  namespaces: string[] | undefined;
  provider: RoutingProvider;
  /** Optional kinds, when the cluster serves them. */
  autoscalerResource?: Resource;
  auxiliaryResource?: Resource;
  hostPath: boolean;
  handlers: SourceHandlers;
}): Sources {
  const watch = <T extends KubeObject>(
    r: Resource,
    labelSelector: string | undefined,
    handlers: InformerHandlers<T>,
    indexers: Indexers<T>,
    namespaces = o.namespaces,
  ) =>
    new Watched<T>(
      (namespace) =>
        new Informer<T>(
          o.client,
          r,
          {
            namespace,
            labelSelector,
            logger: o.logger,
            indexers,
            transform: transformFor(r) as unknown as (obj: T) => T,
          },
          handlers,
        ),
      namespaces,
    );
  const owned = (r: Resource) => watch<KubeObject>(r, managedBySelector, o.handlers.owned, ownedIndexers);
  const stores = {
    endpoints: watch<Endpoint>(resources.endpoint, undefined, o.handlers.endpoint, endpointIndexers(o.config)),
    configs: watch<Config>(resources.endpointConfig, undefined, o.handlers.config, configIndexers),
    models: watch<Model>(resources.model, undefined, o.handlers.model, modelIndexers),
    deployments: owned(resources.deployment),
    services: owned(resources.service),
    claims: owned(resources.persistentVolumeClaim),
    gateways: o.provider.kinds.gateway ? owned(o.provider.kinds.gateway) : undefined,
    routes: owned(o.provider.kinds.route),
    auxiliary: o.auxiliaryResource ? owned(o.auxiliaryResource) : undefined,
    autoscalers: o.autoscalerResource ? owned(o.autoscalerResource) : undefined,
    disruptionBudgets: owned(resources.podDisruptionBudget),
    // PersistentVolumes are cluster-scoped: one informer, whatever namespaces are watched.
    volumes: o.hostPath
      ? watch<KubeObject>(resources.persistentVolume, managedBySelector, o.handlers.volume, ownedIndexers, undefined)
      : undefined,
    pods: o.hostPath ? owned(resources.pod) : undefined,
  };
  const informers = Object.values(stores).flatMap((w) => (w ? (w.informers as Informer<KubeObject>[]) : []));
  return { ...stores, informers };
}

/** Client-side `kubectl apply` keeps a whole copy of the object in this annotation; nothing here reads it. */
const lastApplied = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * What the cache keeps of each object: everything the controller reads, nothing else (managed
 * fields are dropped by the client already). A Deployment keeps its spec (drift is checked against
 * it) but of its status only the counts, a ReplicaFailure and when it became Available; a pod only
 * where it runs and how it ended.
 */
export function transformFor(r: Resource): (obj: KubeObject) => KubeObject {
  const common = (obj: KubeObject) => {
    const annotations = obj.metadata.annotations;
    if (annotations && lastApplied in annotations) Reflect.deleteProperty(annotations, lastApplied);
    return obj;
  };
  if (r === resources.deployment) {
    return (obj) => {
      const status = (obj.status ?? {}) as Record<string, unknown>;
      const { replicas, readyReplicas, updatedReplicas, availableReplicas, observedGeneration } = status;
      type DeploymentCondition = {
        type: string;
        status: string;
        reason?: string;
        message?: string;
        lastTransitionTime?: string;
      };
      const conditions = (status.conditions ?? []) as DeploymentCondition[];
      const kept = [
        // A ReplicaSet that cannot create pods (Pod Security, a quota) shows as this condition.
        ...conditions
          .filter((c) => c.type === 'ReplicaFailure' && c.status === 'True')
          .map(({ type, status, reason, message }) => ({ type, status, reason, message })),
        // When its pods became ready: a data plane that learns of ready pods on its own reload counts from it.
        ...conditions
          .filter((c) => c.type === 'Available' && c.status === 'True' && c.lastTransitionTime)
          .map(({ type, status, lastTransitionTime }) => ({ type, status, lastTransitionTime })),
      ];
      return common({
        ...obj,
        status: {
          replicas,
          readyReplicas,
          updatedReplicas,
          availableReplicas,
          observedGeneration,
          ...(kept.length ? { conditions: kept } : {}),
        },
      });
    };
  }
  if (r === resources.pod) {
    return (obj) =>
      common({
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        metadata: obj.metadata,
        spec: { nodeName: (obj.spec as { nodeName?: string } | undefined)?.nodeName },
        status: { phase: (obj.status as { phase?: string } | undefined)?.phase },
      });
  }
  return common;
}
