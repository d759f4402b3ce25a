// Reads what a reconcile decides from, out of the caches: the templates and kept versions the target
// is resolved from (reconcile/target.ts does the resolving, purely), with every rule that keeps an
// upgrade from restarting model pods (the fetcher, pod defaults and agent image an instance started
// with); the plans of kept versions from their snapshots; the live route as the rollout sees it; a
// host another endpoint holds; and whether the data plane has loaded what a route may name. No writes.
import type { MachineLearningEndpoint, MachineLearningModel } from '../api/generated.ts';
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
  type VariantPlan,
  type VersionPlan,
} from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';
import type { KubeObject } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import type { LiveRoute } from '../rollout/decide.ts';
import { hostHolder } from '../rollout/hosts.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import { decodeVersions, routeVersionsAnnotation } from '../desired/route.ts';
import type { Caches } from './caches.ts';
import { indexes, keyOf } from './indexes.ts';
import type { Templates } from './target.ts';

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

/** `read`, with each answer kept: a key (by `keyOf`) asked again gets the first answer. */
function once<A, R>(read: (a: A) => R, keyOf: (a: A) => unknown = (a) => a): (a: A) => R {
  const answers = new Map<unknown, R>();
  return (a) => {
    const key = keyOf(a);
    if (!answers.has(key)) answers.set(key, read(a));
    return answers.get(key)!;
  };
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
  pinFetcher(namespace: string, plan: VersionPlan): VersionPlan {
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

  /** The templates, kept versions and upgrade rules the endpoint's target is resolved from (resolveTarget), from the caches. */
  templates(endpoint: MachineLearningEndpoint): Templates {
    const { caches, missing } = this.deps;
    const namespace = endpoint.metadata.namespace!;
    const name = endpoint.metadata.name!;
    const config = caches.configs.get(namespace, endpoint.spec.config);
    const models = new Map<string, MachineLearningModel['spec']>();
    for (const v of config?.spec.models ?? []) {
      const model = caches.models.get(namespace, v.model);
      if (model && !isSnapshot(model)) models.set(v.model, model.spec);
    }
    const key = keyOf(namespace, name);
    // Each answer is read once: the gates and the decision of one reconcile resolve the same target
    // even when an informer updates the caches while the gates wait, or while the reconcile writes.
    return {
      config: config && { spec: config.spec, snapshot: isSnapshot(config) },
      models,
      kept: once((version) => this.snapshotPlan(namespace, name, version)),
      promotionMarked: once((promoted) =>
        this.deps.caches.configs
          .byIndex(indexes.endpoint, key)
          .some((c) => c.metadata.labels?.[labels.promoted] === promoted),
      ),
      pin: once(
        (plan: VersionPlan) => this.pinFetcher(namespace, plan),
        (plan) => JSON.stringify(plan),
      ),
      autoscalersMissing: missing?.autoscalers ?? false,
    };
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
