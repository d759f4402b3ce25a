// Reads what a reconcile decides from, out of the caches: the version the templates ask for (or the
// one spec.serveVersion pins), with every rule that keeps an upgrade from restarting model pods (the
// fetcher and pod defaults an instance started with); the plans of kept versions from their
// snapshots; the live route as the rollout sees it; a host another endpoint holds; and whether the
// data plane has loaded what a route may name. No writes.
import type { MachineLearningEndpoint, MachineLearningModel } from '../api/generated.ts';
import { autoscalingProblem } from '../desired/autoscaling.ts';
import { upToDate } from '../desired/compare.ts';
import {
  agentAnnotation,
  fetcherFlagsAnnotation,
  fetcherImageAnnotation,
  isSnapshot,
  labels,
  podDefaultsAnnotation,
} from '../desired/labels.ts';
import { agentContainerName } from '../desired/agent.ts';
import * as desired from '../desired/objects.ts';
import {
  legacyPodDefaults,
  parseAgent,
  parsePodDefaults,
  planFromSnapshot,
  planFromTemplates,
  rolloutAsksAgents,
  type VariantPlan,
  type VersionPlan,
} from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';
import type { KubeObject } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { LiveRoute, RolloutDecision } from '../rollout/decide.ts';
import { hostHolder } from '../rollout/hosts.ts';
import { promotedPlan, promotingShadow, promotionRecord } from '../rollout/shadow-tests.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { decodeVersions, routeVersionsAnnotation } from '../desired/route.ts';
import type { Caches } from './caches.ts';
import { indexes, keyOf } from './indexes.ts';
import { missingTemplates, type Resolved } from './missing-templates.ts';

export type { Resolved };

interface DeploymentStatus {
  replicas?: number;
  readyReplicas?: number;
  updatedReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
}

/** A model instance is Available when its Deployment runs our latest spec with every wanted replica ready. */
export function deploymentAvailable(live: KubeObject | undefined, wanted: desired.Desired): boolean {
  if (!live || !upToDate(live, wanted.object)) return false;
  const status = (live.status ?? {}) as DeploymentStatus;
  // An autoscaled Deployment wants whatever count its autoscaler (or its start) set.
  const replicas =
    (wanted.object.spec as { replicas?: number }).replicas ?? (live.spec as { replicas?: number }).replicas ?? 1;
  return (
    (status.observedGeneration ?? 0) >= (live.metadata.generation ?? 0) &&
    (status.updatedReplicas ?? 0) >= replicas &&
    (status.readyReplicas ?? 0) >= replicas &&
    (status.availableReplicas ?? 0) >= replicas
  );
}

/** Ready replicas of a Deployment. */
export function readiness(live: KubeObject | undefined): number {
  return ((live?.status ?? {}) as DeploymentStatus).readyReplicas ?? 0;
}

export interface ResolverDeps {
  caches: Caches;
  config: OperatorConfig;
  provider: RoutingProvider;
  /** Optional APIs the cluster does not serve. */
  missing?: { autoscalers: boolean; auxiliary: boolean };
}

export class Resolver {
  private readonly deps: ResolverDeps;

  constructor(deps: ResolverDeps) {
    this.deps = deps;
  }

  /**
   * Each instance keeps the fetcher it started with, image and command line: its running
   * Deployment's, else the one its snapshot recorded, else the operator's current one. A new
   * controller's fetcher reaches new versions only, so upgrading the controller restarts no model
   * pod; and a fetcher pinned from 0.1.0, which takes no flags, is never given any.
   */
  pinFetcher(namespace: string, plan: VersionPlan | undefined): VersionPlan | undefined {
    if (!plan) return plan;
    const { caches } = this.deps;
    type Pin = Pick<VariantPlan, 'fetcherImage' | 'fetcherFlags'>;
    const running = (instance: string): Pin | undefined => {
      const spec = caches.deployments.get(namespace, instance)?.spec as
        { template?: { spec?: { initContainers?: { name: string; image: string; args?: string[] }[] } } } | undefined;
      const fetcher = spec?.template?.spec?.initContainers?.find((c) => c.name === desired.fetcherContainerName);
      if (!fetcher) return undefined;
      return {
        fetcherImage: fetcher.image,
        ...((fetcher.args ?? []).some((a) => a.startsWith('--')) ? {} : { fetcherFlags: false }),
      };
    };
    const recorded = (instance: string): Pin | undefined => {
      const annotations = caches.models.get(namespace, instance)?.metadata.annotations;
      const image = annotations?.[fetcherImageAnnotation];
      return image
        ? { fetcherImage: image, ...(annotations?.[fetcherFlagsAnnotation] === 'none' ? { fetcherFlags: false } : {}) }
        : undefined;
    };
    // A server running without the preStop hook (made by a release before it) keeps running so.
    const withoutPreStop = (instance: string) => {
      const spec = caches.deployments.get(namespace, instance)?.spec as
        { template?: { spec?: { containers?: { name: string; lifecycle?: unknown }[] } } } | undefined;
      const server = spec?.template?.spec?.containers?.find((c) => c.name === desired.serverContainerName);
      return server !== undefined && server.lifecycle === undefined;
    };
    // The operator's pod defaults: the running Deployment's (none when a release before them made
    // it), else the ones the snapshot recorded, else (a new instance) the current ones.
    const podDefaults = (v: VariantPlan): Pick<VariantPlan, 'podDefaults'> => {
      const live = caches.deployments.get(namespace, v.instance);
      if (live)
        return {
          podDefaults: parsePodDefaults(live.metadata.annotations?.[podDefaultsAnnotation]) ?? legacyPodDefaults,
        };
      const recordedDefaults =
        v.podDefaults ??
        parsePodDefaults(caches.models.get(namespace, v.instance)?.metadata.annotations?.[podDefaultsAnnotation]);
      return recordedDefaults ? { podDefaults: recordedDefaults } : {};
    };
    // An agent keeps its image: the running Deployment's, else the one its snapshot recorded.
    const agent = (v: VariantPlan): Pick<VariantPlan, 'agent'> => {
      if (!v.agent) return {};
      const spec = caches.deployments.get(namespace, v.instance)?.spec as
        { template?: { spec?: { containers?: { name: string; image: string }[] } } } | undefined;
      const image =
        spec?.template?.spec?.containers?.find((c) => c.name === agentContainerName)?.image ??
        parseAgent(caches.models.get(namespace, v.instance)?.metadata.annotations?.[agentAnnotation])?.image;
      return image ? { agent: { ...v.agent, image } } : {};
    };
    const variants = plan.variants.map((v) => {
      const pinned = running(v.instance) ?? recorded(v.instance);
      const preStop = withoutPreStop(v.instance) ? { preStop: false } : {};
      if (pinned) {
        const { fetcherFlags: _, ...rest } = v;
        return { ...rest, ...pinned, ...preStop, ...podDefaults(v), ...agent(v) };
      }
      return { ...v, ...preStop, ...podDefaults(v), ...agent(v) };
    });
    return { ...plan, variants };
  }

  /** The live route as the rollout sees it: the versions it names, the Services it sends to, what the data plane reports. */
  readRoute(ctx: desired.EndpointContext, live: KubeObject): LiveRoute {
    const annotated = decodeVersions(live.metadata.annotations?.[routeVersionsAnnotation]);
    const labelled = live.metadata.labels?.[labels.version];
    const { services, status } = this.deps.provider.observe(ctx, live);
    return { versions: annotated ?? new Map(labelled ? [[labelled, 100]] : []), services, observed: status?.observed };
  }

  resolveTarget(endpoint: MachineLearningEndpoint, now: Date): Resolved {
    const { caches } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    // A template missing is waited for a while, unless the serving version was made from it.
    const missing = (problem: ConditionInput, what: string, names: string[]): Resolved => {
      const serving = endpoint.status?.endpointConfigVersion;
      const plan = serving ? this.snapshotPlan(namespace, endpoint.metadata.name!, serving) : undefined;
      const servedFrom = plan
        ? [plan.config, ...plan.variants.map((v) => v.variant.model)]
        : serving
          ? null
          : undefined;
      const previous = endpoint.status?.conditions?.find((c) => c.type === problem.type);
      return missingTemplates({ problem, what, names, servedFrom, previous, now });
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
      return missing({ type: 'TemplatesAvailable', status: 'False', reason: 'ConfigNotFound', message }, what, [
        configName,
      ]);
    }
    const models = new Map<string, MachineLearningModel['spec']>();
    for (const v of config.spec.models) {
      const model = caches.models.get(namespace, v.model);
      if (model && !isSnapshot(model)) models.set(v.model, model.spec);
    }
    const resolution = planFromTemplates(
      endpoint.metadata.name!,
      configName,
      config.spec,
      models,
      rolloutAsksAgents(endpoint.spec.rollout),
    );
    if (resolution.ok) return { target: this.promoted(endpoint, resolution.plan) };
    const what = `MachineLearningModel ${resolution.missing.map((m) => `${namespace}/${m}`).join(', ')} named by config ${configName}`;
    const message = `${what} does not exist: create it, or remove the variant from the config`;
    return missing(
      { type: 'TemplatesAvailable', status: 'False', reason: 'ModelNotFound', message },
      what,
      resolution.missing,
    );
  }

  /**
   * The version to roll out instead of `plan` when its shadow test passed with onPass: Promote: the
   * one derived from it, the shadow serving (promotedPlan), rebuilt from the config as it is now so
   * that later changes to it apply. The test's record leaves the status once the derived version
   * serves (it has no such shadow to report it on); then the status naming that version, or the
   * mark on a config snapshot of a version promoted on the same subject, keeps the promotion. A
   * record of that subject that has not passed (a new test, after a rollback) goes first.
   */
  private promoted(endpoint: MachineLearningEndpoint, plan: VersionPlan): VersionPlan {
    const shadow = promotingShadow(plan);
    if (!shadow) return plan;
    const status = endpoint.status;
    const record = promotionRecord(plan, status);
    if (record && record.phase !== 'Passed') return plan;
    const derived = promotedPlan(endpoint.metadata.name!, plan, shadow);
    if (record) return derived;
    if (status?.endpointConfigVersion === derived.version || status?.pendingEndpointConfigVersion === derived.version)
      return derived;
    const key = keyOf(endpoint.metadata.namespace, endpoint.metadata.name!);
    const marked = this.deps.caches.configs
      .byIndex(indexes.endpoint, key)
      .some((c) => c.metadata.labels?.[labels.promoted] === derived.promoted);
    return marked ? derived : plan;
  }

  snapshotPlan(namespace: string, endpoint: string, version: string): VersionPlan | undefined {
    const { caches } = this.deps;
    const key = keyOf(namespace, endpoint);
    const configInstance = caches.configs
      .byIndex(indexes.endpoint, key)
      .find((c) => c.metadata.labels?.[labels.version] === version);
    if (!configInstance) return undefined;
    const models = new Map(caches.models.byIndex(indexes.endpoint, key).map((m) => [m.metadata.name, m]));
    return planFromSnapshot(configInstance, models);
  }

  /** Another endpoint of every watched namespace that holds the same host (hosts are cluster-wide). */
  hostConflict(ctx: desired.EndpointContext): ConditionInput | undefined {
    const { endpoint, config } = ctx;
    const host = desired.hostOf(ctx);
    const holder = hostHolder(
      host,
      this.deps.caches.endpoints
        .byIndex(indexes.host, host)
        .filter((e) => desired.hostOf({ endpoint: e, config }) === host),
    );
    if (!holder || holder.metadata.uid === endpoint.metadata.uid) return undefined;
    return {
      type: 'Ready',
      status: 'False',
      reason: 'HostConflict',
      message: `host ${host} is already served by endpoint ${holder.metadata.namespace}/${holder.metadata.name}: this endpoint routes nothing until it gets a host of its own (spec.host) or the other one lets go of it`,
    };
  }

  /** A version whose autoscaling the cluster or the chart's engine cannot carry does not roll out: the endpoint says why. */
  checkAutoscaling(resolved: Resolved): Resolved {
    if (!resolved.target) return resolved;
    const problem = autoscalingProblem(this.deps.config, resolved.target.variants);
    if (problem) return { problem };
    if (this.deps.missing?.autoscalers && resolved.target.variants.some((v) => v.variant.autoscaling)) {
      const api =
        this.deps.config.autoscaling.engine === 'keda'
          ? "KEDA's ScaledObject API (keda.sh/v1alpha1)"
          : 'the HorizontalPodAutoscaler API (autoscaling/v2)';
      return {
        problem: {
          type: 'TemplatesAvailable',
          status: 'False',
          reason: 'AutoscalingUnsupported',
          message: `${api} is not served by this cluster: install it (then restart the controller), or remove autoscaling from the variants`,
        },
      };
    }
    return resolved;
  }

  /**
   * The count an autoscaled variant of a new version starts at: what the serving version's variant
   * of the same model runs now (so that a switch never lands on fewer pods), within its bounds.
   */
  startReplicas(namespace: string, v: VersionPlan['variants'][number], serving: VersionPlan | undefined): number {
    const a = v.variant.autoscaling!;
    const peer = serving?.variants.find((s) => s.variant.model === v.variant.model && s.instance !== v.instance);
    const current = peer
      ? (this.deps.caches.deployments.get(namespace, peer.instance)?.spec as { replicas?: number } | undefined)
          ?.replicas
      : undefined;
    return Math.min(a.maxInstances, Math.max(a.minInstances, current ?? a.minInstances));
  }

  /** The decision with the replicas autoscaled instances run now, for the status. */
  withLiveReplicas(namespace: string, decision: RolloutDecision): RolloutDecision {
    const deploy = decision.deploy.map((d) => {
      const replicas = new Map(d.replicas);
      for (const v of d.plan.variants) {
        const live = v.variant.autoscaling
          ? (this.deps.caches.deployments.get(namespace, v.instance)?.spec as { replicas?: number } | undefined)
              ?.replicas
          : undefined;
        if (live !== undefined) replicas.set(v.instance, live);
      }
      return { ...d, replicas };
    });
    return { ...decision, deploy };
  }

  /**
   * Whether the data plane has loaded a primary Service's auxiliary object, which a route may then
   * name (the provider's auxiliary objects say when). True where the provider writes none.
   */
  auxiliaryLoaded(namespace: string, instance: string, now: Date): boolean {
    return this.auxiliaryLeftMs(namespace, instance, now) <= 0;
  }

  /** How long until the data plane has loaded a primary Service's auxiliary object (0 or less: loaded, or none needed). */
  private auxiliaryLeftMs(namespace: string, instance: string, now: Date): number {
    const { provider, caches, missing } = this.deps;
    if (!provider.kinds.auxiliary || missing?.auxiliary) return 0;
    return provider.kinds.auxiliary.loadLeftMs(
      caches.auxiliary?.get(namespace, provider.kinds.auxiliary.name(instance)),
      caches.deployments.get(namespace, instance),
      now,
    );
  }

  /** How long until every auxiliary object of these instances has been loaded (for a requeue), if any is not yet. */
  auxiliaryWaitMs(namespace: string, instances: Iterable<string>, now: Date): number | undefined {
    let wait: number | undefined;
    for (const instance of instances) {
      const left = this.auxiliaryLeftMs(namespace, instance, now);
      if (left > 0) wait = Math.min(wait ?? Infinity, left + 100);
    }
    return wait;
  }
}
