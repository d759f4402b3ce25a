// Reconciles one endpoint: reads the world from the caches, computes what it should be, and makes it
// so, whatever event woke it. Traffic moves blue/green: the VirtualService switches to a new version
// in one write, and only once every model instance of that version is Available.
import type { Condition, MachineLearningEndpoint, MachineLearningEndpointConfig, MachineLearningEndpointStatus, MachineLearningModel, TrafficEntry } from '../api/generated.ts';
import { upToDate } from '../desired/compare.ts';
import { labels, storageFinalizer } from '../desired/labels.ts';
import { canonicalJson } from '../desired/names.ts';
import * as desired from '../desired/objects.ts';
import { planFromSnapshot, planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { findCondition, setConditions, type ConditionInput } from '../desired/status.ts';
import type { KubeClient } from '../kube/client.ts';
import { resources, type KubeObject, type Resource } from '../kube/resources.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { routingProvider } from '../routing/providers.ts';
import { backends, type RouteBackend } from '../routing/route.ts';
import type { Logger } from '../log.ts';
import type { OperatorConfig } from '../options.ts';
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
const defaultDeadlineSeconds = 600;
const defaultHistoryLimit = 3;

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
    const status: MachineLearningEndpointStatus = endpoint.status ?? {};
    const generation = endpoint.metadata.generation;
    const now = this.now();

    const { target, problem } = this.resolveTarget(endpoint);
    const servingVersion = status.endpointConfigVersion;
    const serving = servingVersion === undefined ? undefined : servingVersion === target?.version ? target : this.snapshotPlan(namespace, name, servingVersion);
    const deadlineSeconds = endpoint.spec.rollout?.progressDeadlineSeconds ?? defaultDeadlineSeconds;

    // Decide the switch from what the caches show before this round's writes.
    const previousProgressing = findCondition(status.conditions, 'Progressing');
    let active = serving;
    let pending: VersionPlan | undefined;
    let pendingSince: string | undefined;
    let expired = false;
    let requeueAfterMs: number | undefined;
    let switchedFrom: string | undefined;
    let history = [...(status.history ?? [])];
    if (target && target.version !== serving?.version) {
      const failedBefore =
        previousProgressing?.reason === 'ProgressDeadlineExceeded' && status.pendingEndpointConfigVersion === target.version && previousProgressing.observedGeneration === generation;
      const available = target.variants.every((v) => deploymentAvailable(caches.deployments.get(namespace, v.instance), desired.deployment(ctx, v, deadlineSeconds)));
      if (available && !failedBefore) {
        switchedFrom = serving?.version;
        if (servingVersion) history = [servingVersion, ...history];
        active = target;
      } else {
        pending = target;
        const samePending = status.pendingEndpointConfigVersion === target.version && status.pendingSince && (previousProgressing?.reason !== 'ProgressDeadlineExceeded' || failedBefore);
        pendingSince = samePending ? status.pendingSince : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
        const elapsedMs = now.getTime() - Date.parse(pendingSince!);
        expired = failedBefore || elapsedMs >= deadlineSeconds * 1000;
        if (!expired) requeueAfterMs = deadlineSeconds * 1000 - elapsedMs + 1000;
      }
    }
    const historyLimit = endpoint.spec.historyLimit ?? defaultHistoryLimit;
    history = [...new Set(history)].filter((v) => v !== active?.version && v !== pending?.version).slice(0, historyLimit);

    // Everything that should exist: the Gateway, the snapshots and workloads of the serving and the
    // pending version (a model instance both share is built from the pending one, the newest), and
    // the VirtualService of the serving version.
    const wanted = new Map<string, desired.Desired>();
    const want = (d: desired.Desired) => wanted.set(`${d.resource.plural}/${d.object.metadata.name}`, d);
    // Nothing resolvable and nothing serving: record why in status and create nothing.
    if (active || pending) for (const g of this.provider.gateways(ctx)) want(g);
    for (const plan of [active, pending]) {
      if (!plan) continue;
      want(desired.configInstance(ctx, plan));
      for (const v of plan.variants) {
        want(desired.modelInstance(ctx, v));
        for (const d of desired.workloads(ctx, v, deadlineSeconds)) want(d);
      }
    }
    if (active) for (const r of this.provider.routes(ctx, { host: desired.hostOf(ctx), backends: backends([{ plan: active, percent: 100 }]) })) want(r);
    await Promise.all([...wanted.values()].map((d) => this.ensure(d)));
    await this.ensureSnapshotStatuses(namespace, active, pending);

    if (switchedFrom !== undefined || (active && !serving)) {
      this.deps.events.record(this.involved(endpoint), 'Normal', 'VersionSwitched', switchedFrom ? `traffic switched from config version ${switchedFrom} to ${active!.version} (${active!.instance})` : `serving config version ${active!.version} (${active!.instance})`);
    }
    if (target) await this.collectGarbage(endpoint, active, pending, history);

    // A version that still routes traffic but whose snapshots are gone cannot be rebuilt; status keeps naming it.
    const unreadable = !active && servingVersion !== undefined && serving === undefined ? servingVersion : undefined;
    const nextStatus = this.status(ctx, { active, unreadable, pending, pendingSince, expired, problem, history, deadlineSeconds, now });
    await this.writeStatus(endpoint, nextStatus);
    return requeueAfterMs !== undefined ? { requeueAfterMs } : undefined;
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
  private async ensureSnapshotStatuses(namespace: string, active: VersionPlan | undefined, pending: VersionPlan | undefined): Promise<void> {
    const { caches, client } = this.deps;
    const writes: Promise<unknown>[] = [];
    const modelVersion = new Map<string, string>();
    for (const plan of [active, pending]) {
      if (!plan) continue;
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
   * Deletes what no version in use needs: workloads of versions that neither serve nor roll out,
   * and snapshots outside the serving, pending and retained versions.
   */
  private async collectGarbage(endpoint: MachineLearningEndpoint, active: VersionPlan | undefined, pending: VersionPlan | undefined, history: string[]): Promise<void> {
    const { caches, client } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const name = endpoint.metadata.name!;
    const uid = endpoint.metadata.uid!;
    // A version serves but its snapshots could not be read: keep everything until they can.
    if (endpoint.status?.endpointConfigVersion && !active) return;
    const plans = [active, pending].filter((p): p is VersionPlan => p !== undefined);
    const runningInstances = new Set(plans.flatMap((p) => p.variants.map((v) => v.instance)));
    const ours = (o: KubeObject) => o.metadata.labels?.[labels.endpoint] === name && o.metadata.ownerReferences?.some((r) => r.uid === uid);
    const deletions: Promise<unknown>[] = [];
    const remove = (r: Resource, o: KubeObject) => deletions.push(client.delete(r, o.metadata.namespace, o.metadata.name, { propagationPolicy: 'Background', uid: o.metadata.uid }));

    for (const [resource, store] of [
      [resources.deployment, caches.deployments],
      [resources.service, caches.services],
      [resources.persistentVolumeClaim, caches.claims],
    ] as const) {
      for (const o of store.list(namespace)) {
        if (ours(o) && !runningInstances.has(o.metadata.labels?.[labels.modelInstance] ?? '')) remove(resource, o);
      }
    }
    for (const o of caches.volumes?.list() ?? []) {
      const l = o.metadata.labels ?? {};
      if (l[labels.endpoint] === name && l[labels.endpointNamespace] === namespace && !runningInstances.has(l[labels.modelInstance] ?? '')) remove(resources.persistentVolume, o);
    }

    const keptVersions = new Set([...plans.map((p) => p.version), ...history]);
    const configSnapshots = caches.configs.list(namespace).filter((c) => isSnapshot(c) && ours(c));
    const keptConfigs = configSnapshots.filter((c) => keptVersions.has(c.metadata.labels?.[labels.version] ?? ''));
    for (const c of configSnapshots) if (!keptConfigs.includes(c)) remove(resources.endpointConfig, c);
    // Model snapshots are shared between config versions: keep every one a kept config refers to.
    if (keptConfigs.every((c) => c.status?.modelVersions)) {
      const keptModels = new Set([...runningInstances, ...keptConfigs.flatMap((c) => c.status!.modelVersions!.map((m) => m.instance ?? ''))]);
      for (const m of caches.models.list(namespace)) {
        if (isSnapshot(m) && ours(m) && !keptModels.has(m.metadata.name!)) remove(resources.model, m);
      }
    }
    await Promise.all(deletions);
  }

  private status(
    ctx: desired.EndpointContext,
    s: { active?: VersionPlan; unreadable?: string; pending?: VersionPlan; pendingSince?: string; expired: boolean; problem?: ConditionInput; history: string[]; deadlineSeconds: number; now: Date },
  ): MachineLearningEndpointStatus {
    const { endpoint } = ctx;
    const namespace = endpoint.metadata.namespace!;
    const previous = endpoint.status;
    const { caches } = this.deps;
    const traffic: TrafficEntry[] = s.active
      ? backends([{ plan: s.active, percent: 100 }]).map((r: RouteBackend, i) => ({
          variant: r.variant,
          modelVersion: r.modelVersion,
          service: r.service,
          weight: r.weight,
          readyReplicas: readiness(caches.deployments.get(namespace, r.service)),
          replicas: s.active!.variants[i].variant.instances ?? 1,
        }))
      : s.unreadable
        ? (previous?.traffic ?? []).map((t) => ({ ...t, readyReplicas: readiness(caches.deployments.get(namespace, t.service)) }))
        : [];
    const servingVersion = s.active?.version ?? s.unreadable;
    const conditions: ConditionInput[] = [];
    const waitingFor = (plan: VersionPlan) =>
      plan.variants
        .map((v) => `${v.instance} ${readiness(caches.deployments.get(namespace, v.instance))}/${v.variant.instances ?? 1} ready`)
        .join(', ');
    if (s.active) {
      conditions.push({ type: 'Ready', status: 'True', reason: 'Serving', message: `serving config version ${s.active.version} (${s.active.instance}) at ${desired.urlOf(ctx)}` });
    } else if (s.unreadable) {
      conditions.push({
        type: 'Ready',
        status: 'True',
        reason: 'Serving',
        message: `serving config version ${s.unreadable} at ${desired.urlOf(ctx)}; its snapshots are missing, so its objects are left as they are until a new version replaces it`,
      });
    } else if (s.problem) {
      conditions.push({ type: 'Ready', status: 'False', reason: s.problem.reason, message: s.problem.message });
    } else if (s.expired) {
      conditions.push({ type: 'Ready', status: 'False', reason: 'ProgressDeadlineExceeded', message: `the first version did not become Available within ${s.deadlineSeconds}s: ${waitingFor(s.pending!)}` });
    } else {
      conditions.push({ type: 'Ready', status: 'False', reason: 'Creating', message: s.pending ? `waiting for the first version to become Available: ${waitingFor(s.pending)}` : 'nothing to serve yet' });
    }
    if (s.pending && s.expired) {
      conditions.push({
        type: 'Progressing',
        status: 'False',
        reason: 'ProgressDeadlineExceeded',
        message: `config version ${s.pending.version} did not become Available within ${s.deadlineSeconds}s (${waitingFor(s.pending)}); ${servingVersion ? `traffic stays on version ${servingVersion}` : 'nothing serves'}. Check the model's pods and events, fix the model or config, and apply it again.`,
      });
    } else if (s.pending) {
      conditions.push({ type: 'Progressing', status: 'True', reason: 'NewVersionDeploying', message: `deploying config version ${s.pending.version}: ${waitingFor(s.pending)}` });
    } else if (servingVersion) {
      conditions.push({ type: 'Progressing', status: 'True', reason: 'NewVersionAvailable', message: `config version ${servingVersion} is serving` });
    }
    conditions.push(
      s.problem
        ? { ...s.problem, message: servingVersion ? `${s.problem.message}; serving from the snapshots of config version ${servingVersion}` : s.problem.message }
        : { type: 'TemplatesAvailable', status: 'True', reason: 'Resolved', message: 'the config and every model it names exist' },
    );
    // What the data plane says of the route, for providers that report it (Gateway API).
    const liveRoute = caches.routes.get(namespace, this.provider.routeName(ctx));
    const routeStatus = liveRoute ? this.provider.status(ctx, liveRoute) : undefined;
    for (const c of routeStatus?.conditions ?? []) conditions.push({ ...c, type: `Route${c.type}` });
    const wanted = traffic.reduce((n, t) => n + (t.replicas ?? 0), 0);
    const ready = traffic.reduce((n, t) => n + Math.min(t.readyReplicas ?? 0, t.replicas ?? 0), 0);
    let state: MachineLearningEndpointStatus['state'];
    if (servingVersion) state = s.pending && !s.expired ? (s.history.includes(s.pending.version) ? 'RollingBack' : 'Updating') : 'InService';
    else state = s.expired ? 'Failed' : 'Creating';
    return {
      observedGeneration: endpoint.metadata.generation,
      state,
      ...(servingVersion ? { endpointConfigVersion: servingVersion } : {}),
      ...(s.pending ? { pendingEndpointConfigVersion: s.pending.version, pendingSince: s.pendingSince } : {}),
      host: desired.hostOf(ctx),
      url: desired.urlOf(ctx),
      ready: `${ready}/${wanted}`,
      traffic,
      history: s.history,
      conditions: setConditions(previous?.conditions, conditions, endpoint.metadata.generation, s.now),
    };
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
