// Reconciles one endpoint: reads the world from the caches, asks the rollout decision (rollout/,
// pure) what should run and route, and makes it so, whatever event woke it. The order of the writes
// is what keeps traffic safe: workloads first, then the route (which only ever names Available
// workloads), then the status (which records what drains), and removals last.
import type { Condition, MachineLearningEndpoint, MachineLearningEndpointConfig, MachineLearningEndpointStatus, MachineLearningModel } from '../api/generated.ts';
import { upToDate } from '../desired/compare.ts';
import { fetcherFlagsAnnotation, fetcherImageAnnotation, isSnapshot, labels, managerName, podDefaultsAnnotation, replicasOwnerAnnotation, storageFinalizer } from '../desired/labels.ts';
import { autoscalerResource, autoscalingProblem, replicasFieldManager } from '../desired/autoscaling.ts';
import { canonicalJson } from '../desired/names.ts';
import * as desired from '../desired/objects.ts';
import { legacyPodDefaults, parsePodDefaults, planFromSnapshot, planFromTemplates, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import { iso, type ConditionInput } from '../desired/status.ts';
import type { KubeClient } from '../kube/client.ts';
import { resources, type KubeObject, type Resource } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import type { OperatorConfig } from '../options.ts';
import { decide, defaults, instanceReplicas, type LiveRoute, type RolloutDecision, type RolloutInput } from '../rollout/decide.ts';
import { hostHolder } from '../rollout/hosts.ts';
import { indexes, keyOf } from '../controller/indexes.ts';
import { planFingerprint } from '../rollout/strategies.ts';
import { progressOnly, renderStatus } from '../rollout/status.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { routingProvider } from '../routing/providers.ts';
import { decodeVersions, routeVersionsAnnotation } from '../routing/route.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { PrometheusClient } from '../runtime/prometheus.ts';
import type { ReconcileResult } from '../runtime/queue.ts';
import { checkCapacity, nextCheckInMs, runAnalysis, runSmokeTest, SharedLists } from './gates.ts';
import { missingTemplates, waitingReason, type Resolved } from './missing-templates.ts';
import { wantedRouting, wantedWorkloads, type WantedLive } from './wanted.ts';

/** Read access to an informer's cache. */
export interface Store<T extends KubeObject> {
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
  /** The objects an index (controller/indexes.ts) files under a value. */
  byIndex(index: string, value: string): T[];
}

export interface Caches {
  endpoints: Store<MachineLearningEndpoint & KubeObject>;
  configs: Store<MachineLearningEndpointConfig & KubeObject>;
  models: Store<MachineLearningModel & KubeObject>;
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
  /** Objects besides routes that carry them (Traefik's mirroring TraefikServices), when the provider writes any. */
  auxiliary?: Store<KubeObject>;
  /** The autoscalers of autoscaled variants (HorizontalPodAutoscalers or KEDA ScaledObjects). */
  autoscalers?: Store<KubeObject>;
  /** The PodDisruptionBudgets of variants with more than one replica. */
  disruptionBudgets?: Store<KubeObject>;
}

export interface ReconcilerDeps {
  client: KubeClient;
  caches: Caches;
  config: OperatorConfig;
  events: EventRecorder;
  logger: Logger;
  metrics?: Metrics;
  /** Where the metric gates are measured (undefined: no Prometheus configured). */
  prometheus?: PrometheusClient;
  /** Optional APIs the cluster does not serve: the autoscalers' (KEDA), the provider's auxiliary objects (Traefik's). */
  missing?: { autoscalers: boolean; auxiliary: boolean };
  now?: () => Date;
}

interface DeploymentStatus {
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
}

/** The object is this endpoint's: its controller owner reference names it (cluster-scoped objects: its labels do). */
function ownedBy(endpoint: MachineLearningEndpoint, o: KubeObject): boolean {
  if (!o.metadata.namespace) {
    const l = o.metadata.labels ?? {};
    return l[labels.managedBy] === managerName && l[labels.endpoint] === endpoint.metadata.name && l[labels.endpointNamespace] === endpoint.metadata.namespace;
  }
  return o.metadata.ownerReferences?.some((r) => r.controller && r.uid === endpoint.metadata.uid) ?? false;
}

/** A model instance is Available when its Deployment runs our latest spec with every wanted replica ready. */
export function deploymentAvailable(live: KubeObject | undefined, wanted: desired.Desired): boolean {
  if (!live || !upToDate(live, wanted.object)) return false;
  const status = (live.status ?? {}) as DeploymentStatus;
  // An autoscaled Deployment wants whatever count its autoscaler (or its start) set.
  const replicas = (wanted.object.spec as { replicas?: number }).replicas ?? (live.spec as { replicas?: number }).replicas ?? 1;
  return (
    (status.observedGeneration ?? 0) >= (live.metadata.generation ?? 0) &&
    (status.updatedReplicas ?? 0) >= replicas &&
    (status.readyReplicas ?? 0) >= replicas &&
    (status.availableReplicas ?? 0) >= replicas
  );
}


/** How long the data plane may take to load an auxiliary route object (Traefik reloads at most every 2 s). */
const auxiliaryLoadMs = 3000;

/** How often the progress of an endpoint's first version is written to its status, at most. */
const progressStatusMs = 2000;

/** How often the pods of a Deployment short of ready replicas are looked at, at most, for why. */
const podCheckMs = 10_000;

/** How soon an endpoint blocked by someone else's object looks again. */
const conflictRecheckMs = 15_000;

/**
 * Writes one reconcile sends at once: enough to overlap their round trips, few enough that a burst
 * of reconciles (concurrency x this) stays well inside the API server's in-flight limits.
 */
const writesAtOnce = 8;

/** Runs `work` over the items, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

function readiness(live: KubeObject | undefined): number {
  return ((live?.status ?? {}) as DeploymentStatus).readyReplicas ?? 0;
}

export class EndpointReconciler {
  private readonly deps: ReconcilerDeps;
  private readonly now: () => Date;
  private readonly provider: RoutingProvider;
  private readonly autoscalerResource: Resource;
  private readonly sharedLists: SharedLists;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
    this.sharedLists = new SharedLists(deps.client);
    this.now = deps.now ?? (() => new Date());
    this.provider = routingProvider(deps.config);
    this.autoscalerResource = autoscalerResource(deps.config);
  }

  /**
   * The status this controller last wrote per endpoint, and the resourceVersion it was written over:
   * while the cache still shows that version, the write has not reached it, and the status written
   * is the truth (a step's start, its history). A reconcile woken by another object before the
   * status update arrives must not decide on the status before it.
   */
  private readonly written = new Map<string, { over: string | undefined; status: MachineLearningEndpointStatus }>();
  /** When an endpoint's status was last written, and since when a progress-only write has been put off. */
  private readonly statusWrittenAt = new Map<string, number>();
  private readonly statusPending = new Map<string, number>();
  /** Per endpoint: the status last written to each of its snapshots (by resource/name), and the uid of the object it went to. */
  private readonly snapshotStatuses = new Map<string, Map<string, { uid: string | undefined; json: string }>>();
  /** Per model instance: when its pods were last listed, and the scheduler's message about them if one could not be placed. */
  private readonly podChecks = new Map<string, { at: number; message: string | undefined; fetchFailure?: string }>();

  private withWrittenStatus(key: string, cached: MachineLearningEndpoint): MachineLearningEndpoint {
    const w = this.written.get(key);
    if (w && w.over === cached.metadata.resourceVersion) return { ...cached, status: w.status };
    this.written.delete(key);
    return cached;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split('/');
    const { caches, config } = this.deps;
    const cached = caches.endpoints.get(namespace, name);
    if (!cached) {
      this.written.delete(key);
      this.statusWrittenAt.delete(key);
      this.statusPending.delete(key);
      // Its snapshots go with it (owner references): forget what was written to them.
      this.snapshotStatuses.delete(key);
      return;
    }
    const endpoint = this.withWrittenStatus(key, cached);
    if (endpoint.metadata.deletionTimestamp) return this.finalize(endpoint);
    if (config.storage.mode === 'hostPath' && !endpoint.metadata.finalizers?.includes(storageFinalizer)) {
      await this.setFinalizer(endpoint, true);
    }

    const ctx: desired.EndpointContext = { endpoint, config };
    const now = this.now();
    const deadlineSeconds = endpoint.spec.rollout?.progressDeadlineSeconds ?? defaults.progressDeadlineSeconds;
    const resolved = this.checkAutoscaling(this.resolveTarget(endpoint));
    const liveRoute = caches.routes.get(namespace, this.provider.routeName(ctx));
    const hostBlocked = this.hostConflict(ctx);
    const input: RolloutInput = {
      generation: endpoint.metadata.generation ?? 0,
      spec: endpoint.spec,
      status: endpoint.status ?? {},
      target: this.pinFetcher(namespace, resolved.target),
      problem: resolved.problem,
      snapshot: (version) => this.pinFetcher(namespace, this.snapshotPlan(namespace, name, version)),
      route: liveRoute ? this.readRoute(ctx, liveRoute) : undefined,
      routeBlocked: hostBlocked,
      workload: (v, replicas) => {
        const live = caches.deployments.get(namespace, v.instance);
        // The route names the Service: it must be this endpoint's too, not a namesake of someone else's.
        const service = caches.services.get(namespace, v.instance);
        const available = deploymentAvailable(live, desired.deployment(ctx, v, deadlineSeconds, replicas)) && !!service && ownedBy(endpoint, service) && ownedBy(endpoint, live!) && (v.variant.shadow !== undefined || this.auxiliaryLoaded(namespace, v.instance, now));
        return { ready: readiness(live), available };
      },
      now,
    };
    await this.runGates(endpoint, input);
    let decision = decide(input);

    // Everything that should run, then the route: it only ever names workloads that are Available.
    const conflicts: string[] = [];
    const live: WantedLive = {
      startReplicas: (v, serving) => this.startReplicas(namespace, v, serving),
      hostNodes: (instance) => this.hostNodes(namespace, instance),
      loaded: (service) => this.auxiliaryLoaded(namespace, service, now),
      auxiliaryMissing: this.deps.missing?.auxiliary ?? false,
    };
    const wanted = wantedWorkloads(ctx, this.provider, decision, deadlineSeconds, live);
    await eachLimited([...wanted.values()], writesAtOnce, async (d) => {
      if (!(await this.ensure(endpoint, d))) conflicts.push(this.describeConflict(d));
    });
    await this.ensureSnapshotStatuses(key, namespace, decision.deploy.map((d) => d.plan));
    if (hostBlocked) {
      // Another endpoint holds the host: this one must not route it.
      await this.removeRouting(ctx);
    } else if (decision.deploy.length > 0 || liveRoute) {
      for (const d of wantedRouting(ctx, this.provider, decision, live)) {
        if (await this.ensure(endpoint, d)) continue;
        conflicts.push(this.describeConflict(d));
        // The route cannot be written: nothing switches, and the status must not say otherwise.
        decision = decide({ ...input, routeBlocked: { type: 'Ready', status: 'False', reason: 'OwnershipConflict', message: conflicts.join('; ') } });
        break;
      }
    }

    for (const e of decision.outcome.events) this.deps.events.record(this.involved(endpoint), e.type, e.reason, e.message);
    if (decision.outcome.ended) this.deps.metrics?.rollbacks.inc({ namespace, endpoint: endpoint.metadata.name!, reason: decision.outcome.ended });
    this.recordRolloutMetrics(endpoint, decision);
    const { switched, serving } = decision.outcome;
    if (switched && serving) {
      this.deps.events.record(
        this.involved(endpoint),
        'Normal',
        'VersionSwitched',
        switched.from ? `traffic switched from config version ${switched.from} to ${serving.version} (${serving.instance})` : `serving config version ${serving.version} (${serving.instance})`,
      );
    }
    const deployedInstances = [...new Set(decision.deploy.flatMap((d) => d.plan.variants.map((v) => v.instance)))];
    const pods = await this.podProblems(namespace, deployedInstances, now);
    const routeStatus = liveRoute ? this.provider.status(ctx, liveRoute) : undefined;
    // A route just written, that the gateway has not reported on yet, serves nothing so far.
    const routeConditions: ConditionInput[] =
      routeStatus?.conditions ?? (this.provider.reportsStatus && decision.route ? [{ type: 'Accepted', status: 'Unknown', reason: 'Pending', message: `${this.provider.routeResource.kind} ${namespace}/${this.provider.routeName(ctx)} was just written; waiting for the gateway to report on it` }] : []);
    const statusDeferredMs = await this.writeStatus(
      endpoint,
      renderStatus({
        decision: this.withLiveReplicas(namespace, decision),
        previous: endpoint.status,
        generation: endpoint.metadata.generation,
        host: desired.hostOf(ctx),
        url: desired.urlOf(ctx),
        readyOf: (instance) => readiness(caches.deployments.get(namespace, instance)),
        mirroringUnavailable:
          this.provider.mirroringUnavailable() ??
          (this.deps.missing?.auxiliary ? "shadow variants run but get no mirror: Traefik's TraefikService API (traefik.io/v1alpha1) is not served by this cluster; install Traefik's CRDs and enable its kubernetesCRD provider, then restart the controller" : undefined),
        routeConditions: [
          ...routeConditions.map((c) => ({ ...c, type: `Route${c.type}` })),
          ...(conflicts.length ? [{ type: 'ResourcesOwned', status: 'False' as const, reason: 'OwnershipConflict', message: conflicts.join('; ') }] : []),
          ...pods.conditions,
        ],
        now,
      }),
    );
    if (this.deps.logger.isLevelEnabled('debug')) {
      this.deps.logger.debug(
        { endpoint: `${namespace}/${name}`, target: input.target?.version, serving: decision.outcome.serving?.version, unreadable: decision.outcome.unreadable, pending: decision.outcome.pending?.version, keepInstances: [...decision.keepInstances], switched: !!decision.outcome.switched, route: liveRoute ? Object.fromEntries(this.readRoute(ctx, liveRoute).versions) : undefined, statusDeferredMs },
        'decided',
      );
    }
    // Removals come last, once the status records what drains: a restart in between keeps it running.
    const wantedNames = (r: Resource) => new Set([...wanted.values()].filter((d) => d.resource === r).map((d) => d.object.metadata.name));
    await this.collectGarbage(endpoint, decision.keepInstances, decision.keepVersions, wantedNames(this.autoscalerResource), wantedNames(resources.podDisruptionBudget));
    // Objects of someone else's are not watched: look again in a while, in case they went away. And
    // the metric gates of a bake come due on their own clock.
    const checkDue = decision.outcome.rollout?.phase === 'Progressing' && decision.outcome.rollout.weight ? nextCheckInMs(endpoint.spec.rollout?.analysis?.checks ?? [], decision.outcome.rollout.analysis, decision.outcome.rollout.stepStartedAt, now) : undefined;
    const auxiliaryDue = this.auxiliaryWaitMs(namespace, decision.deploy.flatMap((d) => d.plan.variants.filter((v) => !v.variant.shadow).map((v) => v.instance)), now);
    const requeueAfterMs = [decision.requeueAfterMs, resolved.recheckMs, conflicts.length ? conflictRecheckMs : undefined, checkDue, auxiliaryDue, statusDeferredMs, pods.recheckMs].filter((n): n is number => n !== undefined).reduce<number | undefined>((a, b) => (a === undefined ? b : Math.min(a, b)), undefined);
    return requeueAfterMs !== undefined ? { requeueAfterMs } : undefined;
  }

  /**
   * Why pods of the deployed instances do not run, for the endpoint's PodsScheduled condition: a
   * ReplicaSet that cannot create them (its Deployment's ReplicaFailure: a refusal by Pod Security
   * admission, a quota), or a scheduler that cannot place them (the PodScheduled condition of a
   * Pending pod: no node with the GPUs, an untolerated taint, a nodeSelector no node matches).
   * The endpoint's ArtifactsFetched condition, likewise: the termination message of a model pod's
   * artifact fetcher that failed (a refused download, a wrong digest, a role it could not assume).
   * Pods are listed only for a Deployment that lacks ready replicas, at most every podCheckMs; while
   * one does, the endpoint is looked at again, since a pending pod changes no Deployment.
   */
  private async podProblems(namespace: string, instances: string[], now: Date): Promise<{ conditions: ConditionInput[]; recheckMs?: number }> {
    const { caches, client } = this.deps;
    type Live = KubeObject & { spec?: { replicas?: number }; status?: { readyReplicas?: number; conditions?: { type: string; status: string; reason?: string; message?: string }[] } };
    type Terminated = { exitCode?: number; reason?: string; message?: string };
    type ContainerStatus = { name: string; state?: { terminated?: Terminated }; lastState?: { terminated?: Terminated } };
    type PodStatus = { status?: { phase?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[]; initContainerStatuses?: ContainerStatus[] } };
    const problems: { reason: string; text: string }[] = [];
    const fetchFailures: string[] = [];
    let waiting = false;
    for (const instance of instances) {
      const live = caches.deployments.get(namespace, instance) as Live | undefined;
      if (!live) continue;
      const failure = live.status?.conditions?.find((c) => c.type === 'ReplicaFailure' && c.status === 'True');
      if (failure) {
        problems.push({ reason: failure.reason || 'FailedCreate', text: `${instance}: ${failure.message ?? 'its ReplicaSet cannot create pods'}` });
        continue;
      }
      if ((live.status?.readyReplicas ?? 0) >= (live.spec?.replicas ?? 1)) {
        this.podChecks.delete(`${namespace}/${instance}`);
        continue;
      }
      waiting = true;
      const key = `${namespace}/${instance}`;
      let checked = this.podChecks.get(key);
      if (!checked || now.getTime() - checked.at >= podCheckMs) {
        let items: (KubeObject & PodStatus)[] = [];
        try {
          items = (await client.list<KubeObject & PodStatus>(resources.pod, namespace, { labelSelector: `${labels.modelInstance}=${instance}` })).items;
        } catch (err) {
          // No right to list pods (installed without the chart's RBAC): the status just says less.
          this.deps.logger.debug({ err, instance: key }, 'pods not listed');
        }
        const unschedulable = items.flatMap((p) => (p.status?.phase === 'Pending' ? (p.status.conditions ?? []) : [])).find((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable');
        // The artifact fetcher's last failure: its termination message says what to fix.
        const fetcher = items.flatMap((p) => p.status?.initContainerStatuses ?? []).find((c) => c.name === desired.fetcherContainerName && ((c.state?.terminated?.exitCode ?? 0) !== 0 || (c.lastState?.terminated?.exitCode ?? 0) !== 0));
        const failed = fetcher && ((fetcher.state?.terminated?.exitCode ?? 0) !== 0 ? fetcher.state!.terminated! : fetcher.lastState!.terminated!);
        checked = { at: now.getTime(), message: unschedulable?.message, fetchFailure: failed ? failed.message?.trim() || `the fetcher exited with ${failed.exitCode}${failed.reason ? ` (${failed.reason})` : ''}; see its log` : undefined };
        this.podChecks.set(key, checked);
      }
      if (checked.message) problems.push({ reason: 'Unschedulable', text: `${instance}: ${checked.message}` });
      if (checked.fetchFailure) fetchFailures.push(`${instance}: ${checked.fetchFailure}`);
    }
    const conditions: ConditionInput[] = [
      ...(problems.length ? [{ type: 'PodsScheduled', status: 'False' as const, reason: problems[0].reason, message: problems.map((p) => p.text).join('; ') }] : []),
      ...(fetchFailures.length ? [{ type: 'ArtifactsFetched', status: 'False' as const, reason: 'FetchFailed', message: fetchFailures.join('; ') }] : []),
    ];
    return { conditions, ...(waiting || problems.length ? { recheckMs: podCheckMs } : {}) };
  }

  /**
   * Each instance keeps the fetcher it started with, image and command line: its running
   * Deployment's, else the one its snapshot recorded, else the operator's current one. A new
   * controller's fetcher reaches new versions only, so upgrading the controller restarts no model
   * pod; and a fetcher pinned from 0.1.0, which takes no flags, is never given any.
   */
  private pinFetcher(namespace: string, plan: VersionPlan | undefined): VersionPlan | undefined {
    if (!plan) return plan;
    const { caches } = this.deps;
    type Pin = Pick<VariantPlan, 'fetcherImage' | 'fetcherFlags'>;
    const running = (instance: string): Pin | undefined => {
      const spec = caches.deployments.get(namespace, instance)?.spec as { template?: { spec?: { initContainers?: { name: string; image: string; args?: string[] }[] } } } | undefined;
      const fetcher = spec?.template?.spec?.initContainers?.find((c) => c.name === desired.fetcherContainerName);
      if (!fetcher) return undefined;
      return { fetcherImage: fetcher.image, ...((fetcher.args ?? []).some((a) => a.startsWith('--')) ? {} : { fetcherFlags: false }) };
    };
    const recorded = (instance: string): Pin | undefined => {
      const annotations = caches.models.get(namespace, instance)?.metadata.annotations;
      const image = annotations?.[fetcherImageAnnotation];
      return image ? { fetcherImage: image, ...(annotations?.[fetcherFlagsAnnotation] === 'none' ? { fetcherFlags: false } : {}) } : undefined;
    };
    // A server running without the preStop hook (made by a release before it) keeps running so.
    const withoutPreStop = (instance: string) => {
      const spec = caches.deployments.get(namespace, instance)?.spec as { template?: { spec?: { containers?: { name: string; lifecycle?: unknown }[] } } } | undefined;
      const server = spec?.template?.spec?.containers?.find((c) => c.name === desired.serverContainerName);
      return server !== undefined && server.lifecycle === undefined;
    };
    // The operator's pod defaults: the running Deployment's (none when a release before them made
    // it), else the ones the snapshot recorded, else (a new instance) the current ones.
    const podDefaults = (v: VariantPlan): Pick<VariantPlan, 'podDefaults'> => {
      const live = caches.deployments.get(namespace, v.instance);
      if (live) return { podDefaults: parsePodDefaults(live.metadata.annotations?.[podDefaultsAnnotation]) ?? legacyPodDefaults };
      const recordedDefaults = v.podDefaults ?? parsePodDefaults(caches.models.get(namespace, v.instance)?.metadata.annotations?.[podDefaultsAnnotation]);
      return recordedDefaults ? { podDefaults: recordedDefaults } : {};
    };
    const variants = plan.variants.map((v) => {
      const pinned = running(v.instance) ?? recorded(v.instance);
      const preStop = withoutPreStop(v.instance) ? { preStop: false } : {};
      if (pinned) {
        const { fetcherFlags: _, ...rest } = v;
        return { ...rest, ...pinned, ...preStop, ...podDefaults(v) };
      }
      return { ...v, ...preStop, ...podDefaults(v) };
    });
    return { ...plan, variants };
  }

  /**
   * The gates that need the world, run before the decision when they are due: the metric gates while
   * the new version takes traffic, the capacity check before anything of it exists, and the smoke
   * test once it is Available and before it takes traffic.
   */
  private async runGates(endpoint: MachineLearningEndpoint, input: RolloutInput): Promise<void> {
    const { caches, client, config } = this.deps;
    const { target } = input;
    const rollout = endpoint.spec.rollout ?? {};
    const namespace = endpoint.metadata.namespace!;
    const serving = (() => {
      const v = input.status.endpointConfigVersion;
      return v ? (v === target?.version ? target : input.snapshot(v)) : undefined;
    })();
    if (!target || target.version === serving?.version || input.routeBlocked) return;
    const newInstances = target.variants.filter((v) => !serving?.variants.some((s) => s.instance === v.instance));
    const checks = rollout.analysis?.checks ?? [];
    if (checks.length) {
      input.analysis = await runAnalysis({
        status: input.status,
        rollout,
        checks,
        target,
        serving,
        namespace,
        endpoint: endpoint.metadata.name!,
        config,
        provider: this.provider.name,
        prometheus: this.deps.prometheus,
        now: input.now,
      });
      for (const r of input.analysis ?? []) {
        if (r.evaluatedAt === iso(input.now)) this.deps.metrics?.analysisEvaluations.inc({ result: r.result ?? 'Inconclusive' });
        if (r.value !== undefined) this.deps.metrics?.analysisValue.set({ namespace, endpoint: endpoint.metadata.name!, check: r.name }, Number(r.value));
      }
    }
    if (!rollout.dryRun && newInstances.length && newInstances.every((v) => !caches.deployments.get(namespace, v.instance))) {
      input.capacity = await checkCapacity(this.sharedLists, namespace, target, serving);
    }
    const recorded = input.status.rollout;
    const smokeDone = recorded?.version === target.version && recorded.plan === planFingerprint(rollout) && recorded.smokeTest !== undefined;
    const takesTraffic = (input.route?.versions.get(target.version) ?? 0) > 0;
    // The instances it tests are the new ones, asked for with the counts the decision uses (an
    // instance shared with the serving version runs the larger count of the two, and is not tested).
    const starting = instanceReplicas(target);
    if (rollout.smokeTest && !smokeDone && !takesTraffic && newInstances.every((v) => input.workload(v, starting.get(v.instance)!).available)) {
      input.smokeTest = await runSmokeTest(client, namespace, rollout.smokeTest.configMap, newInstances.map((v) => v.instance), rollout.smokeTest.timeoutSeconds ?? 10);
    }
  }

  private recordRolloutMetrics(endpoint: MachineLearningEndpoint, decision: RolloutDecision): void {
    const labels = { namespace: endpoint.metadata.namespace!, endpoint: endpoint.metadata.name! };
    const rollout = decision.outcome.rollout;
    const active = rollout && (rollout.phase === 'Progressing' || rollout.phase === 'Paused');
    this.deps.metrics?.rolloutStep.set(labels, active ? (rollout.step ?? 0) : 0);
    this.deps.metrics?.rolloutWeight.set(labels, active ? (rollout.weight ?? 0) : 0);
    if (decision.route) this.deps.metrics?.setRoute(labels.namespace, labels.endpoint, decision.route);
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

  private resolveTarget(endpoint: MachineLearningEndpoint): Resolved {
    const { caches } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    // A template missing is waited for a while, unless the serving version was made from it.
    const missing = (problem: ConditionInput, what: string, names: string[]): Resolved => {
      const serving = endpoint.status?.endpointConfigVersion;
      const plan = serving ? this.snapshotPlan(namespace, endpoint.metadata.name!, serving) : undefined;
      const servedFrom = plan ? [plan.config, ...plan.variants.map((v) => v.variant.model)] : serving ? null : undefined;
      const previous = endpoint.status?.conditions?.find((c) => c.type === problem.type);
      return missingTemplates({ problem, what, names, servedFrom, previous, now: this.now() });
    };
    // A version pinned by spec.serveVersion comes from its snapshots, whatever the templates say now.
    const pinned = endpoint.spec.serveVersion;
    if (pinned) {
      const plan = this.snapshotPlan(namespace, endpoint.metadata.name!, pinned);
      if (plan) return { target: plan };
      return {
        problem: {
          type: 'TemplatesAvailable',
          status: 'False',
          reason: 'VersionNotFound',
          message: `spec.serveVersion ${pinned} is not a version this endpoint kept (status.history lists those it can serve again): pick one of them, or remove spec.serveVersion to follow the config`,
        },
      };
    }
    const configName = endpoint.spec.config;
    const config = caches.configs.get(namespace, configName);
    if (config && isSnapshot(config)) {
      return {
        problem: {
          type: 'TemplatesAvailable',
          status: 'False',
          reason: 'ConfigNotFound',
          message: `${configName} is a snapshot made by ml-operator, not a MachineLearningEndpointConfig template: point spec.config at a config you created`,
        },
      };
    }
    if (!config) {
      const what = `MachineLearningEndpointConfig ${namespace}/${configName}`;
      const message = `${what} does not exist: create it, or point spec.config at an existing config`;
      return missing({ type: 'TemplatesAvailable', status: 'False', reason: 'ConfigNotFound', message }, what, [configName]);
    }
    const models = new Map<string, MachineLearningModel['spec']>();
    for (const v of config.spec.models) {
      const model = caches.models.get(namespace, v.model);
      if (model && !isSnapshot(model)) models.set(v.model, model.spec);
    }
    const resolution = planFromTemplates(endpoint.metadata.name!, configName, config.spec, models);
    if (resolution.ok) return { target: resolution.plan };
    const what = `MachineLearningModel ${resolution.missing.map((m) => `${namespace}/${m}`).join(', ')} named by config ${configName}`;
    const message = `${what} does not exist: create it, or remove the variant from the config`;
    return missing({ type: 'TemplatesAvailable', status: 'False', reason: 'ModelNotFound', message }, what, resolution.missing);
  }

  private snapshotPlan(namespace: string, endpoint: string, version: string): VersionPlan | undefined {
    const { caches } = this.deps;
    const key = keyOf(namespace, endpoint);
    const configInstance = caches.configs.byIndex(indexes.endpoint, key).find((c) => c.metadata.labels?.[labels.version] === version);
    if (!configInstance) return undefined;
    const models = new Map(caches.models.byIndex(indexes.endpoint, key).map((m) => [m.metadata.name!, m]));
    return planFromSnapshot(configInstance, models);
  }

  private storeFor(resource: Resource): Store<KubeObject> | undefined {
    const { caches } = this.deps;
    const stores: [Resource | undefined, Store<KubeObject> | undefined][] = [
      [resources.deployment, caches.deployments],
      [resources.service, caches.services],
      [resources.persistentVolumeClaim, caches.claims],
      [resources.persistentVolume, caches.volumes],
      [resources.pod, caches.pods],
      [this.provider.gatewayResource, caches.gateways],
      [this.provider.routeResource, caches.routes],
      [this.provider.auxiliaryResource, caches.auxiliary],
      [this.autoscalerResource, caches.autoscalers],
      [resources.podDisruptionBudget, caches.disruptionBudgets],
      [resources.endpointConfig, caches.configs as Store<KubeObject>],
      [resources.model, caches.models as Store<KubeObject>],
    ];
    return stores.find(([r]) => r?.plural === resource.plural && r.group === resource.group)?.[1];
  }

  /**
   * Applies a desired object unless the live one already matches, and never writes over an object
   * that is not this endpoint's: returns false (a conflict) instead. The caches hold only what the
   * controller labels as its own, so an object they do not show is read first: a namesake that
   * someone else made is left as it is.
   */
  private async ensure(endpoint: MachineLearningEndpoint, d: desired.Desired): Promise<boolean> {
    const { namespace, name } = d.object.metadata;
    const live = this.storeFor(d.resource)?.get(namespace, name) ?? (await this.deps.client.get<KubeObject>(d.resource, namespace, name));
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
      await client.apply(d.resource, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace }, spec: { replicas } }, replicasFieldManager);
    }
    await client.apply(d.resource, d.object);
  }

  private describeConflict(d: desired.Desired): string {
    const { namespace, name } = d.object.metadata;
    return `${d.resource.kind} ${namespace ? `${namespace}/` : ''}${name} exists and does not belong to this endpoint; ml-operator never writes over an object it does not own: delete or rename that object (or rename the endpoint or model)`;
  }

  /** Another endpoint of every watched namespace that holds the same host (hosts are cluster-wide). */
  private hostConflict(ctx: desired.EndpointContext): ConditionInput | undefined {
    const { endpoint, config } = ctx;
    const host = desired.hostOf(ctx);
    const holder = hostHolder(host, this.deps.caches.endpoints.byIndex(indexes.host, host).filter((e) => desired.hostOf({ endpoint: e, config }) === host));
    if (!holder || holder.metadata.uid === endpoint.metadata.uid) return undefined;
    return {
      type: 'Ready',
      status: 'False',
      reason: 'HostConflict',
      message: `host ${host} is already served by endpoint ${holder.metadata.namespace}/${holder.metadata.name}: this endpoint routes nothing until it gets a host of its own (spec.host) or the other one lets go of it`,
    };
  }

  /** Deletes this endpoint's gateways and route objects (when another endpoint holds its host). */
  private async removeRouting(ctx: desired.EndpointContext): Promise<void> {
    const { caches, client } = this.deps;
    const { endpoint } = ctx;
    const namespace = endpoint.metadata.namespace!;
    const stores: [Resource | undefined, Store<KubeObject> | undefined][] = [
      [this.provider.routeResource, caches.routes],
      [this.provider.auxiliaryResource, caches.auxiliary],
      [this.provider.gatewayResource, caches.gateways],
    ];
    for (const [resource, store] of stores) {
      if (!resource || !store) continue;
      for (const o of store.byIndex(indexes.endpoint, keyOf(namespace, endpoint.metadata.name!))) {
        if (ownedBy(endpoint, o)) await client.delete(resource, namespace, o.metadata.name, { uid: o.metadata.uid });
      }
    }
  }

  /** A version whose autoscaling the cluster or the chart's engine cannot carry does not roll out: the endpoint says why. */
  private checkAutoscaling(resolved: Resolved): Resolved {
    if (!resolved.target) return resolved;
    const problem = autoscalingProblem(this.deps.config, resolved.target.variants);
    if (problem) return { problem };
    if (this.deps.missing?.autoscalers && resolved.target.variants.some((v) => v.variant.autoscaling)) {
      const api = this.deps.config.autoscaling.engine === 'keda' ? "KEDA's ScaledObject API (keda.sh/v1alpha1)" : 'the HorizontalPodAutoscaler API (autoscaling/v2)';
      return { problem: { type: 'TemplatesAvailable', status: 'False', reason: 'AutoscalingUnsupported', message: `${api} is not served by this cluster: install it (then restart the controller), or remove autoscaling from the variants` } };
    }
    return resolved;
  }

  /**
   * The count an autoscaled variant of a new version starts at: what the serving version's variant
   * of the same model runs now (so that a switch never lands on fewer pods), within its bounds.
   */
  private startReplicas(namespace: string, v: VersionPlan['variants'][number], serving: VersionPlan | undefined): number {
    const a = v.variant.autoscaling!;
    const peer = serving?.variants.find((s) => s.variant.model === v.variant.model && s.instance !== v.instance);
    const current = peer ? (this.deps.caches.deployments.get(namespace, peer.instance)?.spec as { replicas?: number } | undefined)?.replicas : undefined;
    return Math.min(a.maxInstances, Math.max(a.minInstances, current ?? a.minInstances));
  }

  /** The decision with the replicas autoscaled instances run now, for the status. */
  private withLiveReplicas(namespace: string, decision: RolloutDecision): RolloutDecision {
    const deploy = decision.deploy.map((d) => {
      const replicas = new Map(d.replicas);
      for (const v of d.plan.variants) {
        const live = v.variant.autoscaling ? (this.deps.caches.deployments.get(namespace, v.instance)?.spec as { replicas?: number } | undefined)?.replicas : undefined;
        if (live !== undefined) replicas.set(v.instance, live);
      }
      return { ...d, replicas };
    });
    return { ...decision, deploy };
  }

  /**
   * Whether the data plane has had time to load a primary Service's auxiliary object (Traefik's
   * mirroring TraefikService), which a route may then name: it exists, and is older than the data
   * plane's reload. True where the provider writes none.
   */
  private auxiliaryLoaded(namespace: string, instance: string, now: Date): boolean {
    return this.auxiliaryLeftMs(namespace, instance, now) <= 0;
  }

  /** How long until the data plane has loaded a primary Service's auxiliary object (0 or less: loaded, or none needed). */
  private auxiliaryLeftMs(namespace: string, instance: string, now: Date): number {
    if (!this.provider.auxiliaryName || this.deps.missing?.auxiliary) return 0;
    const created = this.deps.caches.auxiliary?.get(namespace, this.provider.auxiliaryName(instance))?.metadata.creationTimestamp;
    return created ? Date.parse(created) + auxiliaryLoadMs - now.getTime() : auxiliaryLoadMs;
  }

  /** How long until every auxiliary object of these instances has been loaded (for a requeue), if any is not yet. */
  private auxiliaryWaitMs(namespace: string, instances: Iterable<string>, now: Date): number | undefined {
    let wait: number | undefined;
    for (const instance of instances) {
      const left = this.auxiliaryLeftMs(namespace, instance, now);
      if (left > 0) wait = Math.min(wait ?? Infinity, left + 100);
    }
    return wait;
  }

  /** Records the model versions in each config snapshot and the config version in each model snapshot. */
  private async ensureSnapshotStatuses(endpointKey: string, namespace: string, plans: VersionPlan[]): Promise<void> {
    const { caches, client } = this.deps;
    const writes: Promise<unknown>[] = [];
    const modelVersion = new Map<string, string>();
    // A status just written may not be in the cache yet: what was written (to that very object) counts.
    let memory = this.snapshotStatuses.get(endpointKey);
    if (!memory) this.snapshotStatuses.set(endpointKey, (memory = new Map()));
    const remembered = memory;
    const write = (r: Resource, live: KubeObject | undefined, name: string, status: Record<string, unknown>) => {
      const key = `${r.plural}/${name}`;
      const json = canonicalJson(status);
      const written = remembered.get(key);
      // Only the fields written here count: the status may hold others (an older release's).
      const liveStatus = (live?.status ?? {}) as Record<string, unknown>;
      if (live && canonicalJson(Object.fromEntries(Object.keys(status).map((k) => [k, liveStatus[k]]))) === json) return;
      if (written?.json === json && (!live || live.metadata.uid === written.uid)) return;
      writes.push(
        client.applyStatus(r, { apiVersion: 'ml-operator.dev/v1alpha1', kind: r.kind, metadata: { name, namespace }, status }).then((o) => remembered.set(key, { uid: o.metadata.uid, json })),
      );
    };
    for (const plan of plans) {
      write(resources.endpointConfig, caches.configs.get(namespace, plan.instance), plan.instance, desired.configInstanceStatus(plan));
      for (const v of plan.variants) modelVersion.set(v.instance, plan.version);
    }
    for (const [instance, version] of modelVersion) write(resources.model, caches.models.get(namespace, instance), instance, { endpointConfigVersion: version });
    await Promise.all(writes);
  }

  /**
   * Deletes the endpoint's workloads of instances the rollout no longer keeps, and its snapshots of
   * versions it no longer keeps. What the live route references is always among the kept.
   */
  private async collectGarbage(endpoint: MachineLearningEndpoint, keepInstances: Set<string>, keepVersions: Set<string>, keepAutoscalers: Set<string>, keepBudgets: Set<string>): Promise<void> {
    const { caches, client } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const name = endpoint.metadata.name!;
    const uid = endpoint.metadata.uid!;
    const ours = (o: KubeObject) => o.metadata.ownerReferences?.some((r) => r.uid === uid);
    const key = keyOf(namespace, name);
    const deletions: Promise<unknown>[] = [];
    const remove = (r: Resource, o: KubeObject) => {
      this.snapshotStatuses.get(`${namespace}/${name}`)?.delete(`${r.plural}/${o.metadata.name}`);
      deletions.push(client.delete(r, o.metadata.namespace, o.metadata.name, { propagationPolicy: 'Background', uid: o.metadata.uid }));
    };

    const gone = (o: KubeObject) => ours(o) && !keepInstances.has(o.metadata.labels?.[labels.modelInstance] ?? '');
    for (const [resource, store] of [
      [resources.deployment, caches.deployments],
      [resources.service, caches.services],
    ] as const) {
      for (const o of store.byIndex(indexes.endpoint, key)) if (gone(o)) remove(resource, o);
    }
    // Auxiliary route objects go with their Service.
    if (this.provider.auxiliaryResource) for (const o of caches.auxiliary?.byIndex(indexes.endpoint, key) ?? []) if (gone(o)) remove(this.provider.auxiliaryResource, o);
    // Autoscalers go with their Deployment, and when their variant no longer scales (or failed).
    for (const o of caches.autoscalers?.byIndex(indexes.endpoint, key) ?? []) if (ours(o) && !keepAutoscalers.has(o.metadata.name)) remove(this.autoscalerResource, o);
    // Disruption budgets go with their version, and when their variant is down to one replica.
    for (const o of caches.disruptionBudgets?.byIndex(indexes.endpoint, key) ?? []) if (ours(o) && !keepBudgets.has(o.metadata.name)) remove(resources.podDisruptionBudget, o);
    // A claim already being deleted has been cleaned up: its pods are ending, its volume follows.
    const claims = caches.claims.byIndex(indexes.endpoint, key).filter((c) => gone(c) && !c.metadata.deletionTimestamp);
    if (this.deps.config.storage.mode === 'hostPath') {
      // The files stay on the nodes unless removed: a clean-up pod first, then the claim and the volume.
      deletions.push(...claims.map((c) => this.cleanUp(endpoint, c)));
    } else {
      for (const c of claims) remove(resources.persistentVolumeClaim, c);
    }

    const configSnapshots = caches.configs.byIndex(indexes.endpoint, key).filter(ours);
    const keptConfigs = configSnapshots.filter((c) => keepVersions.has(c.metadata.labels?.[labels.version] ?? ''));
    for (const c of configSnapshots) if (!keptConfigs.includes(c)) remove(resources.endpointConfig, c);
    // Model snapshots are shared between config versions: keep every one a kept config refers to.
    if (keptConfigs.every((c) => c.status?.modelVersions)) {
      const keptModels = new Set([...keepInstances, ...keptConfigs.flatMap((c) => c.status!.modelVersions!.map((m) => m.instance ?? ''))]);
      for (const m of caches.models.byIndex(indexes.endpoint, key)) {
        if (ours(m) && !keptModels.has(m.metadata.name!)) remove(resources.model, m);
      }
    }
    await Promise.all(deletions);
  }

  private involved(endpoint: MachineLearningEndpoint) {
    return { ...(endpoint as KubeObject), apiVersion: 'ml-operator.dev/v1alpha1', kind: resources.endpoint.kind };
  }

  /**
   * Writes the status when it says something new. While an endpoint brings up its first version,
   * its progress (Creating, then RoutePending: ready counts, the gateway's report) is written at most
   * once per `progressStatusMs`, the latest state at the end of the window: most endpoints then
   * go from nothing to InService in one write. Anything else (serving, a failure, a rollout's step,
   * which a later pass reads back) is written at once. Returns how long a write was put off, if it was.
   */
  private async writeStatus(endpoint: MachineLearningEndpoint, next: MachineLearningEndpointStatus): Promise<number | undefined> {
    const key = `${endpoint.metadata.namespace}/${endpoint.metadata.name}`;
    if (canonicalJson(endpoint.status ?? {}) === canonicalJson(next)) {
      this.statusPending.delete(key);
      return undefined;
    }
    if (progressOnly(endpoint.status, next, !!endpoint.metadata.deletionTimestamp)) {
      const now = this.now().getTime();
      let since = this.statusPending.get(key);
      if (since === undefined) {
        // The window opens with the first status ever wanted, or with the last write.
        const last = this.statusWrittenAt.get(key);
        since = last === undefined ? now : last;
        this.statusPending.set(key, since);
      }
      const left = since + progressStatusMs - now;
      if (left > 0) return left;
    }
    this.statusPending.delete(key);
    this.statusWrittenAt.set(key, this.now().getTime());
    this.recordTransitions(endpoint, endpoint.status?.conditions, next.conditions ?? []);
    await this.deps.client.applyStatus(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: resources.endpoint.kind,
      metadata: { name: endpoint.metadata.name!, namespace: endpoint.metadata.namespace },
      status: next,
    });
    this.written.set(key, { over: endpoint.metadata.resourceVersion, status: next });
    return undefined;
  }

  /** One Event per condition that turns bad, so `kubectl describe` and `kubectl get events` tell the story. */
  private recordTransitions(endpoint: MachineLearningEndpoint, before: readonly Condition[] | undefined, after: readonly Condition[]): void {
    for (const c of after) {
      const old = before?.find((b) => b.type === c.type);
      if (c.status !== 'False' || (old?.status === 'False' && old.reason === c.reason)) continue;
      // Bringing up a first version, waiting for the gateway to take a route, and waiting for
      // templates applied along with the endpoint are not warnings.
      if (c.reason === 'Creating' || c.reason === 'RoutePending' || c.reason === waitingReason) continue;
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

  /**
   * Owner references delete everything namespaced; what they cannot reach (hostPath files on the
   * nodes, cluster-scoped volumes) is removed before the finalizer lets the endpoint go.
   */
  private async finalize(endpoint: MachineLearningEndpoint): Promise<ReconcileResult> {
    if (!endpoint.metadata.finalizers?.includes(storageFinalizer)) return;
    if (endpoint.status?.state !== 'Deleting') await this.writeStatus(endpoint, { ...endpoint.status, state: 'Deleting' });
    const namespace = endpoint.metadata.namespace!;
    const name = endpoint.metadata.name!;
    const claims = this.deps.caches.claims.byIndex(indexes.endpoint, keyOf(namespace, name)).filter((c) => ownedBy(endpoint, c) && !c.metadata.deletionTimestamp);
    const done = await Promise.all(claims.map((c) => this.cleanUp(endpoint, c)));
    this.deps.logger.debug({ endpoint: `${namespace}/${name}`, claims: claims.map((c) => c.metadata.name), done }, 'removing what owner references cannot reach');
    // Clean-up pods run: their end (a pod event) brings the endpoint back here.
    if (done.some((d) => !d)) return { requeueAfterMs: 30_000 };
    const volumes = this.deps.caches.volumes?.byIndex(indexes.endpoint, keyOf(namespace, name)) ?? [];
    await Promise.all(volumes.map((v) => this.deps.client.delete(resources.persistentVolume, undefined, v.metadata.name, { uid: v.metadata.uid })));
    await this.setFinalizer(endpoint, false);
  }

  /**
   * Nodes that hold a hostPath model instance's files: those its claim recorded, and those its pods
   * run on now (hostPath mode watches the endpoint's pods). Empty in the other storage modes.
   */
  private hostNodes(namespace: string, instance: string): string[] {
    const { caches } = this.deps;
    if (!caches.pods) return [];
    const running = caches.pods
      .list(namespace)
      .filter((p) => p.metadata.labels?.[labels.modelInstance] === instance && p.metadata.labels?.[labels.component] === 'model-server')
      .map((p) => (p.spec as { nodeName?: string }).nodeName)
      .filter((n): n is string => !!n);
    return [...new Set([...desired.hostNodesOf(caches.claims.get(namespace, instance)), ...running])].sort();
  }

  /**
   * Removes a hostPath model instance: its files on every node that holds them (a clean-up pod
   * each, through the claim), then the pods, the claim and the volume. True once nothing is left.
   */
  private async cleanUp(endpoint: MachineLearningEndpoint, claim: KubeObject): Promise<boolean> {
    const { caches, client, config } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const nodes = this.hostNodes(namespace, claim.metadata.name);
    const pods = nodes.map((node) => ({ node, name: desired.cleanupPodName(claim.metadata.name, node) }));
    let pending = false;
    for (const { node, name } of pods) {
      const pod = caches.pods?.get(namespace, name) as (KubeObject & { status?: { phase?: string } }) | undefined;
      if (pod?.status?.phase === 'Succeeded') continue;
      pending = true;
      if (!pod) await this.ensure(endpoint, desired.cleanupPod(endpoint, claim, config.fetcher.image, node));
    }
    if (pending) return false;
    await Promise.all(pods.map(({ name }) => client.delete(resources.pod, namespace, name)));
    await client.delete(resources.persistentVolumeClaim, namespace, claim.metadata.name, { uid: claim.metadata.uid });
    await client.delete(resources.persistentVolume, undefined, desired.persistentVolumeName(namespace, claim.metadata.name));
    return true;
  }


}
