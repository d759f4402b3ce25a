// Every object one reconcile wants for an endpoint, from its rollout decision: the snapshots and
// workloads of each version the decision deploys, then the gateways and the route. Pure: what the
// reconciler reads from the caches comes in through `WantedLive`, so that a test can compute, from a
// spec alone, exactly what the controller would write.
import * as desired from '../desired/objects.ts';
import type { VariantPlan, VersionPlan } from '../desired/plan.ts';
import type { RolloutDecision } from '../rollout/decide.ts';
import type { RoutingProvider } from '../routing/provider.ts';

/** What the cluster says, as far as the wanted objects depend on it. */
export interface WantedLive {
  /** The replicas an autoscaled variant of a version starts at (the serving version's current count, within its bounds). */
  startReplicas(v: VariantPlan, serving: VersionPlan | undefined): number;
  /** Nodes that hold a hostPath model instance's files (empty in the other storage modes). */
  hostNodes(instance: string): string[];
  /** Whether the data plane has loaded a primary Service's auxiliary object, which the route may then name. */
  loaded(service: string): boolean;
  /** The cluster does not serve the provider's auxiliary objects (Traefik's TraefikService). */
  auxiliaryMissing: boolean;
}

export const wantedKey = (d: desired.Desired) => `${d.resource.plural}.${d.resource.group}/${d.object.metadata.name}`;

/** The snapshots, auxiliary route objects and workloads of every version the decision deploys, by wantedKey (the last one of a name wins). */
export function wantedWorkloads(ctx: desired.EndpointContext, provider: RoutingProvider, decision: RolloutDecision, deadlineSeconds: number, live: WantedLive): Map<string, desired.Desired> {
  const wanted = new Map<string, desired.Desired>();
  const want = (d: desired.Desired) => wanted.set(wantedKey(d), d);
  for (const { plan, replicas } of decision.deploy) {
    want(desired.configInstance(ctx, plan));
    for (const planned of plan.variants) {
      want(desired.modelInstance(ctx, planned));
      if (!planned.variant.shadow && provider.auxiliary && !live.auxiliaryMissing) for (const d of provider.auxiliary(ctx, [planned.instance], decision.mirrors ?? [])) want(d);
      // A failed version scales to zero, autoscaled or not: its autoscaler goes.
      const v = planned.variant.autoscaling && replicas.get(planned.instance) === 0 ? { ...planned, variant: { ...planned.variant, autoscaling: undefined } } : planned;
      const count = v.variant.autoscaling ? live.startReplicas(v, decision.outcome.serving) : replicas.get(v.instance);
      for (const d of desired.workloads(ctx, v, deadlineSeconds, count, live.hostNodes(v.instance))) want(d);
    }
  }
  return wanted;
}

/** The endpoint's gateways and route objects; the route only when the decision has one. */
export function wantedRouting(ctx: desired.EndpointContext, provider: RoutingProvider, decision: RolloutDecision, live: WantedLive): desired.Desired[] {
  const mirrors = live.auxiliaryMissing ? [] : decision.mirrors;
  const routes = decision.route ? provider.routes(ctx, { host: desired.hostOf(ctx), backends: decision.route, mirrors, targets: decision.targets, loaded: live.loaded }) : [];
  return [...provider.gateways(ctx), ...routes];
}
