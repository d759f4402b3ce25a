// What the controller wants for an endpoint, in one pure function: desiredState(inputs) resolves the
// version the templates (or spec.serveVersion) ask for, and gives the rollout decision, every object
// to write (the snapshots and workloads of each version the decision deploys, then the gateways and
// the route) and the status that tells it. What the reconciler reads from the caches comes in
// through the inputs, so that a test or a benchmark computes, from the templates alone, exactly what
// the controller would write; the reconciler calls it, and nothing else of the pipeline, between
// reading the world (and running the gates that need it) and writing to it.
import type { DataCaptureConfig, MachineLearningEndpointStatus } from '../api/generated.ts';
import { agentShadows, captureConfigMap, rolloutComparisons } from '../desired/agent.ts';
import { autoscalerResource } from '../desired/autoscaling.ts';
import * as desired from '../desired/objects.ts';
import type { VariantPlan, VersionPlan } from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';
import { decide, type RolloutDecision, type RolloutInput } from '../rollout/decide.ts';
import { renderStatus, type StatusInput } from '../rollout/status.ts';
import type { RoutingProvider } from '../routing/provider.ts';
import type { Resolved } from './missing-templates.ts';
import { resolveTarget, type Templates } from './target.ts';

/** What the cluster says, as far as the wanted objects depend on it. */
export interface WantedLive {
  /** The replicas an autoscaled variant of a version starts at (the serving version's current count, within its bounds). */
  startReplicas(v: VariantPlan, serving: VersionPlan | undefined): number;
  /** Nodes that hold a hostPath model instance's files (empty in the other storage modes). */
  hostNodes(instance: string): string[];
  /** Whether the data plane has loaded a primary Service's auxiliary object, which the route may then name. */
  loaded: (service: string) => boolean;
  /** The cluster does not serve the provider's auxiliary objects. */
  auxiliaryMissing: boolean;
}

export const wantedKey = (d: desired.Desired) => `${d.resource.plural}.${d.resource.group}/${d.object.metadata.name}`;

/** The snapshots, auxiliary route objects and workloads of every version the decision deploys, by wantedKey (the last one of a name wins). */
export function wantedWorkloads(
  ctx: desired.EndpointContext,
  provider: RoutingProvider,
  decision: RolloutDecision,
  deadlineSeconds: number,
  live: WantedLive,
): Map<string, desired.Desired> {
  const wanted = new Map<string, desired.Desired>();
  const want = (d: desired.Desired) => wanted.set(wantedKey(d), d);
  const autoscaled = new Map<string, boolean>();
  for (const { plan, replicas } of decision.deploy) {
    want(desired.configInstance(ctx, plan));
    for (const planned of plan.variants) {
      want(desired.modelInstance(ctx, planned));
      if (!planned.variant.shadow && provider.kinds.auxiliary && !live.auxiliaryMissing)
        for (const d of provider.kinds.auxiliary.objects(ctx, [planned.instance], decision.mirrors ?? [])) want(d);
      // A failed version scales to zero, autoscaled or not: its autoscaler goes.
      const v =
        planned.variant.autoscaling && replicas.get(planned.instance) === 0
          ? { ...planned, variant: { ...planned.variant, autoscaling: undefined } }
          : planned;
      const count = v.variant.autoscaling ? live.startReplicas(v, decision.outcome.serving) : replicas.get(v.instance);
      for (const d of desired.workloads(ctx, v, deadlineSeconds, count, live.hostNodes(v.instance))) want(d);
      autoscaled.set(v.instance, !!v.variant.autoscaling);
    }
  }
  // An instance's last entry decides whether it is autoscaled, as it decides its replicas: a version
  // that runs the serving version's instance at a fixed count (autoscaling removed) does not keep the
  // serving version's autoscaler, which would take the replicas back from it.
  const autoscaler = autoscalerResource(ctx.config);
  for (const [instance, is] of autoscaled)
    if (!is) wanted.delete(`${autoscaler.plural}.${autoscaler.group}/${instance}`);
  return wanted;
}

/** The endpoint's gateways and route objects; the route only when the decision has one. */
export function wantedRouting(
  ctx: desired.EndpointContext,
  provider: RoutingProvider,
  decision: RolloutDecision,
  live: WantedLive,
): desired.Desired[] {
  const mirrors = live.auxiliaryMissing ? [] : decision.mirrors;
  return provider.objects(
    ctx,
    decision.route && {
      host: desired.hostOf(ctx),
      backends: decision.route,
      mirrors,
      targets: decision.targets,
      loaded: live.loaded,
    },
  );
}

/** What the status reports beside the decision: the live counts and the data plane's word. */
export interface Observed {
  /** Ready replicas of a model instance's Deployment. */
  readyOf: (instance: string) => number;
  /** The replicas an autoscaled instance runs now (undefined: not autoscaled, or not there yet). */
  autoscaledReplicas?(instance: string): number | undefined;
  /** What the data plane reports on the live route (providers that report), if there is one. */
  routeStatus?: { conditions: ConditionInput[] };
  /** Why the data plane gets no mirrors at all, if so. */
  mirroringUnavailable?: string;
}

/** What the rollout reads beside its target: the endpoint's status, the live route and workloads, the gates' results. */
export type RolloutReads = Omit<RolloutInput, 'target' | 'problem' | 'snapshot'>;

export interface DesiredStateInputs {
  ctx: desired.EndpointContext;
  provider: RoutingProvider;
  /** The templates and kept versions the target is resolved from. */
  templates: Templates;
  rollout: RolloutReads;
  deadlineSeconds: number;
  live: WantedLive;
  /** A route is live: it is kept (re-written) even when the decision deploys nothing. */
  routed: boolean;
  /** Another endpoint holds the host: this one routes nothing, and its route objects go. */
  hostBlocked: boolean;
  observed: Observed;
}

export interface DesiredState {
  /** The version the endpoint asks for (pinned), or why there is none, and when to look again. */
  resolved: Resolved;
  decision: RolloutDecision;
  /** Snapshots, auxiliary route objects and workloads, written before the route. */
  workloads: desired.Desired[];
  /** Gateways and the route, written once the workloads are. */
  routing: desired.Desired[];
  /** The endpoint's route objects are to be removed (its host is another endpoint's). */
  removeRouting: boolean;
  status: MachineLearningEndpointStatus;
}

/** The decision with the replicas autoscaled instances run now, for the status. */
function withLiveReplicas(decision: RolloutDecision, observed: Observed): RolloutDecision {
  if (!observed.autoscaledReplicas) return decision;
  const deploy = decision.deploy.map((d) => {
    const replicas = new Map(d.replicas);
    for (const v of d.plan.variants) {
      const live = v.variant.autoscaling ? observed.autoscaledReplicas!(v.instance) : undefined;
      if (live !== undefined) replicas.set(v.instance, live);
    }
    return { ...d, replicas };
  });
  return { ...decision, deploy };
}

/**
 * The status a decision makes, with the conditions only the writes could find (objects of someone
 * else's, pods that cannot run) added to the data plane's.
 */
export function statusFor(
  inputs: DesiredStateInputs,
  decision: RolloutDecision,
  extra: readonly ConditionInput[] = [],
  comparisons?: StatusInput['comparisons'],
  figures?: StatusInput['figures'],
): MachineLearningEndpointStatus {
  const { ctx, provider, observed } = inputs;
  const namespace = ctx.endpoint.metadata.namespace;
  // A route just written, that the gateway has not reported on yet, serves nothing so far.
  const routeConditions: ConditionInput[] =
    observed.routeStatus?.conditions ??
    (provider.dataPlane.reportsStatus && decision.route
      ? [
          {
            type: 'Accepted',
            status: 'Unknown',
            reason: 'Pending',
            message: `${provider.kinds.route.kind} ${namespace}/${provider.routeName(ctx)} was just written; waiting for the gateway to report on it`,
          },
        ]
      : []);
  return renderStatus({
    decision: withLiveReplicas(decision, observed),
    previous: inputs.rollout.status,
    generation: ctx.endpoint.metadata.generation,
    host: desired.hostOf(ctx),
    url: desired.urlOf(ctx),
    readyOf: observed.readyOf,
    mirroringUnavailable: observed.mirroringUnavailable,
    routeConditions: [...routeConditions.map((c) => ({ ...c, type: `Route${c.type}` })), ...extra],
    comparisons,
    figures,
    now: inputs.rollout.now,
  });
}

/**
 * The settings the endpoint's agents read, while a version it deploys has agents: the capture the
 * templates ask for now (else the serving version's), so that a change reaches running pods in place.
 */
function wantedCaptureConfig(
  inputs: DesiredStateInputs,
  rollout: RolloutInput,
  decision: RolloutDecision,
): desired.Desired[] {
  const namespace = inputs.ctx.endpoint.metadata.namespace!;
  return agentInstances(decision).length
    ? [
        captureConfigMap(inputs.ctx.endpoint, captureSettings(rollout.target, decision), [
          ...agentShadows(namespace, decision.outcome.serving, decision.agentMirrors ?? []),
          ...rolloutComparisons(
            namespace,
            rollout.target,
            decision.outcome.serving,
            inputs.rollout.spec.rollout?.analysis?.checks ?? [],
            decision.outcome.rollout,
          ),
        ]),
      ]
    : [];
}

/** The capture settings the endpoint's agents get: the templates' now, else the serving version's. */
export const captureSettings = (
  target: VersionPlan | undefined,
  decision: RolloutDecision,
): DataCaptureConfig | undefined => (target ?? decision.outcome.serving)?.spec.dataCapture;

/** The model instances the decision deploys that run an agent. */
export const agentInstances = (decision: RolloutDecision): string[] => [
  ...new Set(decision.deploy.flatMap((d) => d.plan.variants.filter((v) => v.agent).map((v) => v.instance))),
];

/**
 * The rollout's whole input: the target the templates resolve to (pinned as its running instances
 * started), kept versions from their snapshots (pinned too), and what the reconciler read. The
 * reconciler runs the gates that need the world on it before desiredState.
 */
export function resolveRollout(inputs: Pick<DesiredStateInputs, 'ctx' | 'templates' | 'rollout'>): {
  resolved: Resolved;
  rollout: RolloutInput;
} {
  const { ctx, templates } = inputs;
  const resolved = resolveTarget(ctx.endpoint, templates, ctx.config, inputs.rollout.now);
  const snapshot = (version: string) => {
    const plan = templates.kept(version);
    return plan && templates.pin(plan);
  };
  return { resolved, rollout: { ...inputs.rollout, target: resolved.target, problem: resolved.problem, snapshot } };
}

/** Everything the controller wants for the endpoint now: the version, the decision, the objects, the status. */
export function desiredState(inputs: DesiredStateInputs): DesiredState {
  const { ctx, provider, live } = inputs;
  const { resolved, rollout } = resolveRollout(inputs);
  const decision = decide(rollout);
  const workloads = [
    ...wantedWorkloads(ctx, provider, decision, inputs.deadlineSeconds, live).values(),
    ...wantedCaptureConfig(inputs, rollout, decision),
  ];
  const routing =
    !inputs.hostBlocked && (decision.deploy.length > 0 || inputs.routed)
      ? wantedRouting(ctx, provider, decision, live)
      : [];
  return {
    resolved,
    decision,
    workloads,
    routing,
    removeRouting: inputs.hostBlocked,
    status: statusFor(inputs, decision),
  };
}
