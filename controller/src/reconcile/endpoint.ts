// Reconciles one endpoint: reads the world from the caches, asks the rollout decision (rollout/,
// pure) what should run and route, and makes it so, whatever event woke it. The order of the writes
// is what keeps traffic safe: workloads first, then the route (which only ever names Available
// workloads), then the status (which records what drains), and removals last.
import type { Condition, MachineLearningEndpoint, MachineLearningEndpointConfig, MachineLearningEndpointStatus, MachineLearningModel } from '../api/generated.ts';
import { upToDate } from '../desired/compare.ts';
import { fetcherImageAnnotation, labels, storageFinalizer } from '../desired/labels.ts';
import { canonicalJson } from '../desired/names.ts';
import * as desired from '../desired/objects.ts';
import { planFromSnapshot, planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';
import type { KubeClient } from '../kube/client.ts';
import { resources, type KubeObject, type Resource } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import type { OperatorConfig } from '../options.ts';
import { decide, defaults, type LiveRoute } from '../rollout/decide.ts';
import { renderStatus } from '../rollout/status.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { routingProvider } from '../routing/providers.ts';
import { decodeVersions, routeVersionsAnnotation } from '../routing/route.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { ReconcileResult } from '../runtime/queue.ts';

/** Read access to an informer's cache. */
export interface Store<T extends KubeObject> {
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
}

export interface Caches {
  endpoints: Store<MachineLearningEndpoint & KubeObject>;
  configs: Store<MachineLearningEndpointConfig & KubeObject>;
  models: Store<MachineLearningModel & KubeObject>;
  deployments: Store<KubeObject>;
  services: Store<KubeObject>;
  claims: Store<KubeObject>;
  volumes?: Store<KubeObject>;
  /** Gateways of the routing provider (none when routes attach to a shared gateway). */
  gateways?: Store<KubeObject>;
  /** Route objects of the routing provider (VirtualServices, HTTPRoutes). */
  routes: Store<KubeObject>;
}

export interface ReconcilerDeps {
  client: KubeClient;
  caches: Caches;
  config: OperatorConfig;
  events: EventRecorder;
  logger: Logger;
  now?: () => Date;
}

interface DeploymentStatus {
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
}

const isSnapshot = (o: KubeObject | undefined) => o?.metadata.labels?.[labels.snapshot] === 'true';

/** A model instance is Available when its Deployment runs our latest spec with every wanted replica ready. */
export function deploymentAvailable(live: KubeObject | undefined, wanted: desired.Desired): boolean {
  if (!live || !upToDate(live, wanted.object)) return false;
  const status = (live.status ?? {}) as DeploymentStatus;
  const replicas = (wanted.object.spec as { replicas: number }).replicas;
  return (
    (status.observedGeneration ?? 0) >= (live.metadata.generation ?? 0) &&
    (status.updatedReplicas ?? 0) >= replicas &&
    (status.readyReplicas ?? 0) >= replicas &&
    (status.availableReplicas ?? 0) >= replicas
  );
}

function readiness(live: KubeObject | undefined): number {
  return ((live?.status ?? {}) as DeploymentStatus).readyReplicas ?? 0;
}

export class EndpointReconciler {
  private readonly deps: ReconcilerDeps;
  private readonly now: () => Date;
  private readonly provider: RoutingProvider;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
    this.now = deps.now ?? (() => new Date());
    this.provider = routingProvider(deps.config);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split('/');
    const { caches, config } = this.deps;
    const endpoint = caches.endpoints.get(namespace, name);
    if (!endpoint) return;
    if (endpoint.metadata.deletionTimestamp) return this.finalize(endpoint);
    if (config.storage.mode === 'hostPath' && !endpoint.metadata.finalizers?.includes(storageFinalizer)) {
      await this.setFinalizer(endpoint, true);
    }

    const ctx: desired.EndpointContext = { endpoint, config };
    const now = this.now();
    const deadlineSeconds = endpoint.spec.rollout?.progressDeadlineSeconds ?? defaults.progressDeadlineSeconds;
    const resolved = this.resolveTarget(endpoint);
    const target = this.pinFetcher(namespace, resolved.target);
    const { problem } = resolved;
    const liveRoute = caches.routes.get(namespace, this.provider.routeName(ctx));
    const decision = decide({
      generation: endpoint.metadata.generation ?? 0,
      spec: endpoint.spec,
      status: endpoint.status ?? {},
      target,
      problem,
      snapshot: (version) => this.pinFetcher(namespace, this.snapshotPlan(namespace, name, version)),
      route: liveRoute ? this.readRoute(ctx, liveRoute) : undefined,
      workload: (v, replicas) => {
        const live = caches.deployments.get(namespace, v.instance);
        return { ready: readiness(live), available: deploymentAvailable(live, desired.deployment(ctx, v, deadlineSeconds, replicas)) };
      },
      now,
    });

    // Everything that should run, then the route: it only ever names workloads that are Available.
    const wanted = new Map<string, desired.Desired>();
    const want = (d: desired.Desired) => wanted.set(`${d.resource.plural}.${d.resource.group}/${d.object.metadata.name}`, d);
    if (decision.deploy.length > 0 || liveRoute) for (const g of this.provider.gateways(ctx)) want(g);
    for (const { plan, replicas } of decision.deploy) {
      want(desired.configInstance(ctx, plan));
      for (const v of plan.variants) {
        want(desired.modelInstance(ctx, v));
        for (const d of desired.workloads(ctx, v, deadlineSeconds, replicas.get(v.instance))) want(d);
      }
    }
    await Promise.all([...wanted.values()].map((d) => this.ensure(d)));
    await this.ensureSnapshotStatuses(namespace, decision.deploy.map((d) => d.plan));
    if (decision.route) {
      for (const r of this.provider.routes(ctx, { host: desired.hostOf(ctx), backends: decision.route })) await this.ensure(r);
    }

    const { switched, serving } = decision.outcome;
    if (switched && serving) {
      this.deps.events.record(
        this.involved(endpoint),
        'Normal',
        'VersionSwitched',
        switched.from ? `traffic switched from config version ${switched.from} to ${serving.version} (${serving.instance})` : `serving config version ${serving.version} (${serving.instance})`,
      );
    }
    const routeStatus = liveRoute ? this.provider.status(ctx, liveRoute) : undefined;
    // A route just written, that the gateway has not reported on yet, serves nothing so far.
    const routeConditions: ConditionInput[] =
      routeStatus?.conditions ?? (this.provider.reportsStatus && decision.route ? [{ type: 'Accepted', status: 'Unknown', reason: 'Pending', message: `${this.provider.routeResource.kind} ${namespace}/${this.provider.routeName(ctx)} was just written; waiting for the gateway to report on it` }] : []);
    await this.writeStatus(
      endpoint,
      renderStatus({
        decision,
        previous: endpoint.status,
        generation: endpoint.metadata.generation,
        host: desired.hostOf(ctx),
        url: desired.urlOf(ctx),
        readyOf: (instance) => readiness(caches.deployments.get(namespace, instance)),
        routeConditions: routeConditions.map((c) => ({ ...c, type: `Route${c.type}` })),
        now,
      }),
    );
    // Removals come last, once the status records what drains: a restart in between keeps it running.
    await this.collectGarbage(endpoint, decision.keepInstances, decision.keepVersions);
    return decision.requeueAfterMs !== undefined ? { requeueAfterMs: decision.requeueAfterMs } : undefined;
  }

  /**
   * Each instance keeps the fetcher image it started with: its running Deployment's, else the one its
   * snapshot recorded, else the operator's current one. A new controller's fetcher reaches new
   * versions only, so upgrading the controller restarts no model pod.
   */
  private pinFetcher(namespace: string, plan: VersionPlan | undefined): VersionPlan | undefined {
    if (!plan) return plan;
    const { caches } = this.deps;
    const running = (instance: string) => {
      const spec = caches.deployments.get(namespace, instance)?.spec as { template?: { spec?: { initContainers?: { name: string; image: string }[] } } } | undefined;
      return spec?.template?.spec?.initContainers?.find((c) => c.name === desired.fetcherContainerName)?.image;
    };
    const variants = plan.variants.map((v) => {
      const fetcherImage = running(v.instance) ?? caches.models.get(namespace, v.instance)?.metadata.annotations?.[fetcherImageAnnotation] ?? v.fetcherImage;
      return fetcherImage ? { ...v, fetcherImage } : v;
    });
    return { ...plan, variants };
  }

  /** The live route as the rollout sees it: the versions it names, the Services it sends to, what the data plane reports. */
  private readRoute(ctx: desired.EndpointContext, live: KubeObject): LiveRoute {
    const annotated = decodeVersions(live.metadata.annotations?.[routeVersionsAnnotation]);
    const labelled = live.metadata.labels?.[labels.version];
    return {
      versions: annotated ?? new Map(labelled ? [[labelled, 100]] : []),
      services: this.provider.referencedServices(live),
      observed: this.provider.status(ctx, live)?.observed,
    };
  }

  private resolveTarget(endpoint: MachineLearningEndpoint): { target?: VersionPlan; problem?: ConditionInput } {
    const { caches } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const configName = endpoint.spec.config;
    const config = caches.configs.get(namespace, configName);
    if (!config || isSnapshot(config)) {
      return {
        problem: {
          type: 'TemplatesAvailable',
          status: 'False',
          reason: 'ConfigNotFound',
          message: config
            ? `${configName} is a snapshot made by ml-operator, not a MachineLearningEndpointConfig template: point spec.config at a config you created`
            : `MachineLearningEndpointConfig ${namespace}/${configName} does not exist: create it, or point spec.config at an existing config`,
        },
      };
    }
    const models = new Map<string, MachineLearningModel['spec']>();
    for (const v of config.spec.models) {
      const model = caches.models.get(namespace, v.model);
      if (model && !isSnapshot(model)) models.set(v.model, model.spec);
    }
    const resolution = planFromTemplates(endpoint.metadata.name!, configName, config.spec, models);
    if (resolution.ok) return { target: resolution.plan };
    const names = resolution.missing.map((m) => `${namespace}/${m}`).join(', ');
    return {
      problem: {
        type: 'TemplatesAvailable',
        status: 'False',
        reason: 'ModelNotFound',
        message: `MachineLearningModel ${names} named by config ${configName} does not exist: create it, or remove the variant from the config`,
      },
    };
  }

  private snapshotPlan(namespace: string, endpoint: string, version: string): VersionPlan | undefined {
    const { caches } = this.deps;
    const configInstance = caches.configs
      .list(namespace)
      .find((c) => isSnapshot(c) && c.metadata.labels?.[labels.endpoint] === endpoint && c.metadata.labels?.[labels.version] === version);
    if (!configInstance) return undefined;
    const models = new Map(
      caches.models
        .list(namespace)
        .filter((m) => isSnapshot(m) && m.metadata.labels?.[labels.endpoint] === endpoint)
        .map((m) => [m.metadata.name!, m]),
    );
    return planFromSnapshot(configInstance, models);
  }

  private storeFor(resource: Resource): Store<KubeObject> | undefined {
    const { caches } = this.deps;
    const stores: [Resource | undefined, Store<KubeObject> | undefined][] = [
      [resources.deployment, caches.deployments],
      [resources.service, caches.services],
      [resources.persistentVolumeClaim, caches.claims],
      [resources.persistentVolume, caches.volumes],
      [this.provider.gatewayResource, caches.gateways],
      [this.provider.routeResource, caches.routes],
      [resources.endpointConfig, caches.configs as Store<KubeObject>],
      [resources.model, caches.models as Store<KubeObject>],
    ];
    return stores.find(([r]) => r?.plural === resource.plural && r.group === resource.group)?.[1];
  }

  /** Applies a desired object unless the live one already matches. */
  private async ensure(d: desired.Desired): Promise<void> {
    const live = this.storeFor(d.resource)?.get(d.object.metadata.namespace, d.object.metadata.name);
    if (upToDate(live, d.object)) return;
    await this.deps.client.apply(d.resource, d.object);
  }

  /** Records the model versions in each config snapshot and the config version in each model snapshot. */
  private async ensureSnapshotStatuses(namespace: string, plans: VersionPlan[]): Promise<void> {
    const { caches, client } = this.deps;
    const writes: Promise<unknown>[] = [];
    const modelVersion = new Map<string, string>();
    for (const plan of plans) {
      const status = desired.configInstanceStatus(plan);
      const live = caches.configs.get(namespace, plan.instance);
      if (!live || canonicalJson(live.status?.modelVersions) !== canonicalJson(status.modelVersions)) {
        writes.push(client.applyStatus(resources.endpointConfig, { apiVersion: 'ml-operator.dev/v1alpha1', kind: resources.endpointConfig.kind, metadata: { name: plan.instance, namespace }, status }));
      }
      for (const v of plan.variants) modelVersion.set(v.instance, plan.version);
    }
    for (const [instance, version] of modelVersion) {
      if (caches.models.get(namespace, instance)?.status?.endpointConfigVersion === version) continue;
      writes.push(client.applyStatus(resources.model, { apiVersion: 'ml-operator.dev/v1alpha1', kind: resources.model.kind, metadata: { name: instance, namespace }, status: { endpointConfigVersion: version } }));
    }
    await Promise.all(writes);
  }

  /**
   * Deletes the endpoint's workloads of instances the rollout no longer keeps, and its snapshots of
   * versions it no longer keeps. What the live route references is always among the kept.
   */
  private async collectGarbage(endpoint: MachineLearningEndpoint, keepInstances: Set<string>, keepVersions: Set<string>): Promise<void> {
    const { caches, client } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const name = endpoint.metadata.name!;
    const uid = endpoint.metadata.uid!;
    const ours = (o: KubeObject) => o.metadata.labels?.[labels.endpoint] === name && o.metadata.ownerReferences?.some((r) => r.uid === uid);
    const deletions: Promise<unknown>[] = [];
    const remove = (r: Resource, o: KubeObject) => deletions.push(client.delete(r, o.metadata.namespace, o.metadata.name, { propagationPolicy: 'Background', uid: o.metadata.uid }));

    for (const [resource, store] of [
      [resources.deployment, caches.deployments],
      [resources.service, caches.services],
      [resources.persistentVolumeClaim, caches.claims],
    ] as const) {
      for (const o of store.list(namespace)) {
        if (ours(o) && !keepInstances.has(o.metadata.labels?.[labels.modelInstance] ?? '')) remove(resource, o);
      }
    }
    for (const o of caches.volumes?.list() ?? []) {
      const l = o.metadata.labels ?? {};
      if (l[labels.endpoint] === name && l[labels.endpointNamespace] === namespace && !keepInstances.has(l[labels.modelInstance] ?? '')) remove(resources.persistentVolume, o);
    }

    const configSnapshots = caches.configs.list(namespace).filter((c) => isSnapshot(c) && ours(c));
    const keptConfigs = configSnapshots.filter((c) => keepVersions.has(c.metadata.labels?.[labels.version] ?? ''));
    for (const c of configSnapshots) if (!keptConfigs.includes(c)) remove(resources.endpointConfig, c);
    // Model snapshots are shared between config versions: keep every one a kept config refers to.
    if (keptConfigs.every((c) => c.status?.modelVersions)) {
      const keptModels = new Set([...keepInstances, ...keptConfigs.flatMap((c) => c.status!.modelVersions!.map((m) => m.instance ?? ''))]);
      for (const m of caches.models.list(namespace)) {
        if (isSnapshot(m) && ours(m) && !keptModels.has(m.metadata.name!)) remove(resources.model, m);
      }
    }
    await Promise.all(deletions);
  }

  private involved(endpoint: MachineLearningEndpoint) {
    return { ...(endpoint as KubeObject), apiVersion: 'ml-operator.dev/v1alpha1', kind: resources.endpoint.kind };
  }

  private async writeStatus(endpoint: MachineLearningEndpoint, next: MachineLearningEndpointStatus): Promise<void> {
    if (canonicalJson(endpoint.status ?? {}) === canonicalJson(next)) return;
    this.recordTransitions(endpoint, endpoint.status?.conditions, next.conditions ?? []);
    await this.deps.client.applyStatus(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: resources.endpoint.kind,
      metadata: { name: endpoint.metadata.name!, namespace: endpoint.metadata.namespace },
      status: next,
    });
  }

  /** One Event per condition that turns bad, so `kubectl describe` and `kubectl get events` tell the story. */
  private recordTransitions(endpoint: MachineLearningEndpoint, before: readonly Condition[] | undefined, after: readonly Condition[]): void {
    for (const c of after) {
      const old = before?.find((b) => b.type === c.type);
      if (c.status !== 'False' || (old?.status === 'False' && old.reason === c.reason)) continue;
      if (c.reason === 'Creating') continue;
      this.deps.events.record(this.involved(endpoint), 'Warning', c.reason, c.message);
    }
  }

  private async setFinalizer(endpoint: MachineLearningEndpoint, present: boolean): Promise<void> {
    // Server-side apply owns just our entry of the finalizer list: applying without it removes only ours.
    await this.deps.client.apply(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: resources.endpoint.kind,
      metadata: { name: endpoint.metadata.name!, namespace: endpoint.metadata.namespace, finalizers: present ? [storageFinalizer] : [] },
    });
  }

  /** Owner references delete everything namespaced; cluster-scoped volumes are ours to remove. */
  private async finalize(endpoint: MachineLearningEndpoint): Promise<ReconcileResult> {
    if (!endpoint.metadata.finalizers?.includes(storageFinalizer)) return;
    if (endpoint.status?.state !== 'Deleting') await this.writeStatus(endpoint, { ...endpoint.status, state: 'Deleting' });
    const namespace = endpoint.metadata.namespace!;
    const name = endpoint.metadata.name!;
    const volumes = (this.deps.caches.volumes?.list() ?? []).filter((v) => v.metadata.labels?.[labels.endpoint] === name && v.metadata.labels?.[labels.endpointNamespace] === namespace);
    await Promise.all(volumes.map((v) => this.deps.client.delete(resources.persistentVolume, undefined, v.metadata.name, { uid: v.metadata.uid })));
    await this.setFinalizer(endpoint, false);
  }
}
