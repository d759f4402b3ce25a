// The rollout decision's inputs and outputs, and what its phases share. Pure.
import type {
  MachineLearningEndpointSpec,
  MachineLearningEndpointStatus,
  RolloutPreview,
  RolloutStatus,
} from '../api/generated.ts';
import { fixedReplicas, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';
import type { RouteBackend, RouteMirror, RouteTarget } from '../desired/route.ts';
import type { CheckRecord } from './analysis.ts';

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
  /** The version the templates (or spec.serveVersion) resolve to, or the problem that keeps them from resolving. */
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
  /** The metric gates' records, with this round's evaluations (the reconciler runs the due ones). */
  analysis?: CheckRecord[];
  /** The smoke test of the pending version, when it ran this round. */
  smokeTest?: { passed: boolean; message: string };
  /** Whether the cluster can hold the pending version beside the serving one (before anything of it exists). */
  capacity?: { ok: boolean; message: string };
  now: Date;
}

/** A version whose workloads must exist, and the replicas of each of its instances. */
export interface Deployed {
  plan: VersionPlan;
  replicas: Map<string, number>;
}

export interface RolloutEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface RolloutDecision {
  /** What runs, in order; an instance in several entries takes the last entry's replicas. */
  deploy: Deployed[];
  /** The route to write; undefined while nothing can serve. */
  route?: RouteBackend[];
  /** The serving version's shadows that take their mirror, and the header targets of its variants (with the route). */
  mirrors?: RouteMirror[];
  /** The serving version's shadows its agents mirror to (mirror: Agent), once they can take the copies. */
  agentMirrors?: RouteMirror[];
  targets?: RouteTarget[];
  /** Versions whose snapshots are kept. */
  keepVersions: Set<string>;
  /** Model instances whose workloads are kept: everything else of the endpoint's is removed. */
  keepInstances: Set<string>;
  /** When nothing in the cluster will wake the reconcile: a deadline, a step, the end of a drain. */
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
  /** The pending version failed this attempt (deadline, analysis, smoke test, abort) or waits for capacity. */
  expired: boolean;
  /** Switched all traffic this round: from the version given (undefined: the first version). */
  switched?: { from?: string; to: string };
  draining: NonNullable<MachineLearningEndpointStatus['draining']>;
  history: string[];
  deadlineSeconds: number;
  problem?: ConditionInput;
  blocked?: ConditionInput;
  /** The rollout's state to record (status.rollout), and the plan to show (status.preview). */
  rollout?: RolloutStatus;
  preview?: RolloutPreview;
  /** The Progressing condition, when the rollout says more than "deploying" or "available". */
  progressing?: ConditionInput;
  /** This round ended the rollout without promotion, for this reason (AnalysisFailed, CanaryUnavailable, Aborted, SmokeTestFailed). */
  ended?: string;
  /** Events of this round besides the condition transitions (a step taken). */
  events: RolloutEvent[];
}

/**
 * The replicas each instance of a version starts with: its fixed count, or its autoscaler's minimum
 * (the reconciler starts it at the serving version's current count).
 */
export function instanceReplicas(plan: VersionPlan): Map<string, number> {
  return new Map(
    plan.variants.map((v) => [
      v.instance,
      v.variant.autoscaling ? v.variant.autoscaling.minInstances : fixedReplicas(v),
    ]),
  );
}
