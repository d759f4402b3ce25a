// The rollout decision: which version serves, which one rolls out, which ones drain, what each
// runs with, what the route carries, and what the endpoint's status says. Pure: the reconciler
// reads the caches into a RolloutInput and carries out the RolloutDecision; nothing here does I/O,
// so every case is a table test.
//
// The live route is the truth of what serves: it names the versions it routes to. Status mirrors it
// and records what the route cannot: the versions draining after a switch (with their Services, so
// that a restarted controller keeps them running until their time is up), the pending version and
// since when, and the history kept for rollback.
import type { MachineLearningEndpointSpec, MachineLearningEndpointStatus } from '../api/generated.ts';
import type { VariantPlan, VersionPlan } from '../desired/plan.ts';
import { findCondition, type ConditionInput } from '../desired/status.ts';
import { backends, type RouteBackend } from '../routing/route.ts';

export const defaults = { progressDeadlineSeconds: 600, drainSeconds: 30, historyLimit: 3 } as const;

/** The Deployment of one model instance, as the caches show it against what the decision wants. */
export interface WorkloadState {
  /** Ready replicas. */
  ready: number;
  /** The Deployment runs the wanted spec (with these replicas) and every replica is ready and available. */
  available: boolean;
}

/** The route object in the cluster, as the provider reads it. */
export interface LiveRoute {
  /** Config versions it routes to, with their share in percent. */
  versions: Map<string, number>;
  /** Services it sends traffic to. */
  services: string[];
  /** Whether the data plane has processed its latest generation; undefined when the provider cannot tell. */
  observed?: boolean;
}

export interface RolloutInput {
  generation: number;
  spec: MachineLearningEndpointSpec;
  /** The endpoint's status as last written. */
  status: MachineLearningEndpointStatus;
  /** The version the templates resolve to, or the problem that keeps them from resolving. */
  target?: VersionPlan;
  problem?: ConditionInput;
  /** A version rebuilt from its snapshots; undefined when they are missing. */
  snapshot(version: string): VersionPlan | undefined;
  route?: LiveRoute;
  /**
   * Why the endpoint's route cannot be written (another owner's object, another endpoint's host):
   * then no version switches, and no deadline runs out on account of it.
   */
  routeBlocked?: ConditionInput;
  /** The state of an instance's Deployment if it ran `variant` with `replicas`. */
  workload(variant: VariantPlan, replicas: number): WorkloadState;
  now: Date;
}

/** A version whose workloads must exist, and the replicas of each of its instances. */
export interface Deployed {
  plan: VersionPlan;
  replicas: Map<string, number>;
}

export interface RolloutDecision {
  /** What runs, in order; an instance in several entries takes the last entry's replicas. */
  deploy: Deployed[];
  /** The route to write; undefined while nothing can serve. */
  route?: RouteBackend[];
  /** Versions whose snapshots are kept. */
  keepVersions: Set<string>;
  /** Model instances whose workloads are kept: everything else of the endpoint's is removed. */
  keepInstances: Set<string>;
  /** When nothing in the cluster will wake the reconcile: a deadline, the end of a drain. */
  requeueAfterMs?: number;
  /** Facts for the status and events (the reconciler renders them). */
  outcome: Outcome;
}

export interface Outcome {
  serving?: VersionPlan;
  /** A version that serves but whose snapshots are missing: its route is left as it is. */
  unreadable?: string;
  pending?: VersionPlan;
  pendingSince?: string;
  /** The pending version is one that served before (from the history). */
  rollingBack: boolean;
  /** The pending version passed its deadline (this attempt). */
  expired: boolean;
  /** Switched this round: from the version given (undefined: the first version). */
  switched?: { from?: string; to: string };
  draining: NonNullable<MachineLearningEndpointStatus['draining']>;
  history: string[];
  deadlineSeconds: number;
  problem?: ConditionInput;
  blocked?: ConditionInput;
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

function instanceReplicas(plan: VersionPlan): Map<string, number> {
  return new Map(plan.variants.map((v) => [v.instance, v.variant.instances ?? 1]));
}

/** The version with the largest share of the live route. */
function primaryOf(route: LiveRoute | undefined): string | undefined {
  return route ? [...route.versions].sort((a, b) => b[1] - a[1])[0]?.[0] : undefined;
}

/**
 * The pending version failed this attempt: its deadline passed while the spec (generation) stayed
 * what it was. A new generation, a new attempt number or a new version starts afresh.
 */
function failedBefore(input: RolloutInput, version: string): boolean {
  const progressing = findCondition(input.status.conditions, 'Progressing');
  return progressing?.reason === 'ProgressDeadlineExceeded' && input.status.pendingEndpointConfigVersion === version && progressing.observedGeneration === input.generation;
}

export function decide(input: RolloutInput): RolloutDecision {
  const { spec, status, target, now } = input;
  const deadlineSeconds = spec.rollout?.progressDeadlineSeconds ?? defaults.progressDeadlineSeconds;
  const drainSeconds = spec.rollout?.drainSeconds ?? defaults.drainSeconds;
  const historyLimit = spec.historyLimit ?? defaults.historyLimit;

  // What serves: the live route, or (for a route written by an older controller, or not seen yet)
  // the version status names.
  const servingVersion = primaryOf(input.route) ?? status.endpointConfigVersion;
  let serving = servingVersion === undefined ? undefined : servingVersion === target?.version ? target : input.snapshot(servingVersion);
  const unreadable = servingVersion !== undefined && serving === undefined ? servingVersion : undefined;

  let history = [...(status.history ?? [])];
  let draining = [...(status.draining ?? [])];
  const drainUntil = iso(new Date(now.getTime() + drainSeconds * 1000));
  // A switch the last round made but could not record (a crash between the route and the status):
  // the version status still names has left the route, so it drains from now.
  if (status.endpointConfigVersion && servingVersion && status.endpointConfigVersion !== servingVersion && !input.route?.versions.has(status.endpointConfigVersion)) {
    const previous = status.endpointConfigVersion;
    if (!draining.some((d) => d.version === previous)) {
      const services = (status.traffic ?? []).filter((t) => !t.version || t.version === previous).map((t) => t.service);
      draining.push({ version: previous, services, until: drainUntil });
    }
    history = [previous, ...history];
  }

  let pending: Deployed | undefined;
  let pendingSince: string | undefined;
  let expired = false;
  let switched: Outcome['switched'];
  let requeueAfterMs: number | undefined;
  const requeueIn = (ms: number) => (requeueAfterMs = Math.max(1000, Math.min(requeueAfterMs ?? Infinity, ms)));

  if (target && target.version !== servingVersion) {
    // While it rolls out, an instance both versions share runs the larger of their replica counts:
    // the pending version never takes capacity away from the serving one.
    const replicas = instanceReplicas(target);
    const servingReplicas = serving ? instanceReplicas(serving) : new Map<string, number>();
    for (const [instance, n] of replicas) if (servingReplicas.has(instance)) replicas.set(instance, Math.max(n, servingReplicas.get(instance)!));
    const failed = failedBefore(input, target.version);
    const available = !failed && !input.routeBlocked && target.variants.every((v) => input.workload(v, replicas.get(v.instance)!).available);
    if (available) {
      switched = { from: servingVersion, to: target.version };
      if (servingVersion) {
        const services = serving ? serving.variants.map((v) => v.instance) : (input.route?.services ?? []);
        const leaving = services.filter((s) => !target.variants.some((v) => v.instance === s));
        draining = draining.filter((d) => d.version !== servingVersion);
        if (leaving.length > 0) draining.push({ version: servingVersion, services: leaving, until: drainUntil });
        history = [servingVersion, ...history];
      }
      serving = target;
    } else {
      const same = status.pendingEndpointConfigVersion === target.version && status.pendingSince !== undefined;
      const restarted = findCondition(status.conditions, 'Progressing')?.reason === 'ProgressDeadlineExceeded' && !failed;
      pendingSince = same && !restarted ? status.pendingSince! : iso(now);
      const elapsedMs = now.getTime() - Date.parse(pendingSince);
      expired = failed || (!input.routeBlocked && elapsedMs >= deadlineSeconds * 1000);
      if (!expired && !input.routeBlocked) requeueIn(deadlineSeconds * 1000 - elapsedMs + 1000);
      // A failed version holds no capacity: what it does not share with the serving version scales to zero.
      if (expired) for (const instance of replicas.keys()) if (!servingReplicas.has(instance)) replicas.set(instance, 0);
      pending = { plan: target, replicas };
    }
  }
  const servingNow = serving?.version ?? unreadable;

  // A drain ends when its time is up and, where the provider tells, once the gateway has processed
  // the route that no longer names the version.
  const routeSettled = switched === undefined && input.route?.observed !== false;
  const drained = draining.filter((d) => d.version !== servingNow && routeSettled && Date.parse(d.until) <= now.getTime());
  draining = draining.filter((d) => d.version !== servingNow && !drained.includes(d));
  // A version that drained served before: it stays in the history (for rollback) if it is not there yet.
  for (const d of drained) if (!history.includes(d.version)) history.unshift(d.version);
  for (const d of draining) requeueIn(Math.max(0, Date.parse(d.until) - now.getTime()) + 500);

  // Draining versions first, then the serving one, then the pending one: an instance that several
  // share gets the replicas of the last (which already took the larger count where it matters).
  const deploy: Deployed[] = [];
  for (const d of draining) {
    const plan = input.snapshot(d.version);
    if (plan) deploy.push({ plan, replicas: instanceReplicas(plan) });
  }
  if (serving) deploy.push({ plan: serving, replicas: instanceReplicas(serving) });
  if (pending) deploy.push(pending);

  history = [...new Set(history)].filter((v) => v !== servingNow && v !== pending?.plan.version).slice(0, historyLimit);

  const keepInstances = new Set<string>([...deploy.flatMap((d) => [...d.replicas.keys()]), ...draining.flatMap((d) => d.services), ...(input.route?.services ?? [])]);
  const keepVersions = new Set<string>([...(servingNow ? [servingNow] : []), ...(pending ? [pending.plan.version] : []), ...draining.map((d) => d.version), ...history]);

  return {
    deploy,
    route: serving && !input.routeBlocked ? backends([{ plan: serving, percent: 100 }]) : undefined,
    keepVersions,
    keepInstances,
    requeueAfterMs,
    outcome: { serving, unreadable, pending: pending?.plan, pendingSince, rollingBack: pending !== undefined && (status.history ?? []).includes(pending.plan.version), expired, switched, draining, history, deadlineSeconds, problem: input.problem, blocked: input.routeBlocked },
  };
}
