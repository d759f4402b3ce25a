// The phases of the rollout decision that surround its verdict (decide.ts): what serves now, read
// from the live route and the status (observe), and once the verdict is given, which drains end,
// what each kept version runs, what is kept, and the route that carries it (settle). Pure.
import type { MachineLearningEndpointStatus } from '../api/generated.ts';
import { isShadow, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import { backends, mirrorsOf, targetsOf } from '../desired/route.ts';
import {
  instanceReplicas,
  type Deployed,
  type LiveRoute,
  type Outcome,
  type RolloutDecision,
  type RolloutInput,
} from './decision.ts';
import { stoppedShadows } from './shadow-tests.ts';

export type Draining = NonNullable<MachineLearningEndpointStatus['draining']>;

/** The drains with `version`'s replaced by one of these Services until `until` (none when there are none). */
export function withDrain(draining: Draining, version: string, services: string[], until: string): Draining {
  const rest = draining.filter((d) => d.version !== version);
  return services.length > 0 ? [...rest, { version, services, until }] : rest;
}

/** The serving version and the version sharing its traffic (a canary), from the live route. */
export function splitOf(
  route: LiveRoute | undefined,
  recorded: string | undefined,
): { stable?: string; canary?: { version: string; weight: number } } {
  const entries = [...(route?.versions ?? [])].filter(([, w]) => w > 0);
  if (entries.length === 0) return { stable: recorded };
  if (entries.length === 1) return { stable: entries[0][0] };
  // Two versions: the one status names serves, the other takes a share. Without that, the larger.
  const sorted = entries.sort((a, b) => b[1] - a[1]);
  const stable = sorted.find(([v]) => v === recorded)?.[0] ?? sorted[0][0];
  const [version, weight] = sorted.find(([v]) => v !== stable)!;
  return { stable, canary: { version, weight } };
}

/** The Services of a version: its plan's, else what the status last said takes its traffic. */
export function servicesOf(
  status: MachineLearningEndpointStatus,
  p: VersionPlan | undefined,
  version: string,
): string[] {
  return (
    p?.variants.map((v) => v.instance) ??
    (status.traffic ?? []).filter((t) => t.version === version).map((t) => t.service)
  );
}

export interface Observation {
  servingVersion?: string;
  serving?: VersionPlan;
  /** The serving version, when its plan cannot be read. */
  unreadable?: string;
  /** The target's share of the route, when it has one. */
  canary?: { version: string; weight: number };
  history: string[];
  draining: Draining;
}

/** What serves now, and what drains: the live route, or (a route not seen yet, or older) the version status names. */
export function observe(input: RolloutInput, drainUntil: string): Observation {
  const { status, target } = input;
  const split = splitOf(input.route, status.endpointConfigVersion);
  const servingVersion = split.stable;
  const serving =
    servingVersion === undefined
      ? undefined
      : servingVersion === target?.version
        ? target
        : input.snapshot(servingVersion);
  const unreadable = servingVersion !== undefined && serving === undefined ? servingVersion : undefined;
  let history = [...(status.history ?? [])];
  let draining = [...(status.draining ?? [])];
  // A switch the last round made but could not record (a crash between the route and the status):
  // the version status still names has left the route, so it drains from now.
  const previous = status.endpointConfigVersion;
  if (previous && servingVersion && previous !== servingVersion && !input.route?.versions.get(previous)) {
    if (!draining.some((d) => d.version === previous)) {
      const left = (status.traffic ?? [])
        .filter((t) => !t.version || t.version === previous)
        .map((t) => t.service)
        .filter((s) => !input.route?.services.includes(s));
      draining = withDrain(draining, previous, left, drainUntil);
    }
    history = [previous, ...history];
  }
  // A version that shares the route but is not the one rolling out (the config changed again, or
  // back): it leaves the route and drains.
  let canary = split.canary;
  if (canary && canary.version !== target?.version) {
    const leaving = servicesOf(status, input.snapshot(canary.version), canary.version).filter(
      (s) => !serving?.variants.some((v) => v.instance === s),
    );
    draining = withDrain(draining, canary.version, leaving, drainUntil);
    canary = undefined;
  }
  return { servingVersion, serving, unreadable, canary, history, draining };
}

/** What the verdict (decide.ts) leaves for the last phase. */
export interface Verdict {
  serving?: VersionPlan;
  unreadable?: string;
  pending?: Deployed;
  switched: Outcome['switched'];
  /** The pending version's share of the route to write. */
  targetWeight: number;
  draining: Draining;
  history: string[];
}

export interface Settled {
  draining: Draining;
  history: string[];
  /** When a drain still running ends. */
  drainsDueMs: number[];
  decision: Pick<
    RolloutDecision,
    'deploy' | 'route' | 'mirrors' | 'agentMirrors' | 'targets' | 'keepInstances' | 'keepVersions'
  >;
}

/** Drains that end, what each kept version runs, what is kept (never what the live route names), and the route. */
export function settle(input: RolloutInput, v: Verdict, historyLimit: number): Settled {
  const { status, now } = input;
  const { serving, unreadable, pending, switched, targetWeight } = v;
  const servingNow = serving?.version ?? unreadable;
  // A drain ends when its time is up and, where the provider tells, once the gateway has processed
  // the route that no longer names the version.
  const routeSettled = switched === undefined && input.route?.observed !== false;
  const drained = v.draining.filter(
    (d) => d.version !== servingNow && routeSettled && Date.parse(d.until) <= now.getTime(),
  );
  const draining = v.draining.filter((d) => d.version !== servingNow && !drained.includes(d));
  let history = [...v.history];
  // A version that drained served before: it stays in the history (for rollback) if it is not there yet.
  for (const d of drained)
    if (!history.includes(d.version) && d.version !== pending?.plan.version) history.unshift(d.version);
  const drainsDueMs = draining.map((d) => Math.max(0, Date.parse(d.until) - now.getTime()) + 500);

  // Draining versions first, then the serving one, then the pending one: an instance that several
  // share gets the replicas of the last (which already took the larger count where it matters).
  const deploy: Deployed[] = [];
  for (const d of draining) {
    const plan = input.snapshot(d.version) ?? (pending?.plan.version === d.version ? pending.plan : undefined);
    if (plan) deploy.push({ plan, replicas: instanceReplicas(plan) });
  }
  if (serving) deploy.push({ plan: serving, replicas: instanceReplicas(serving) });
  if (pending) deploy.push(pending);
  // A shadow whose test failed with onFail: Stop runs no pod, whichever version names it as a shadow.
  const stopped = stoppedShadows(serving, status);
  for (let i = 0; i < deploy.length; i++) {
    const d = deploy[i];
    const stops = d.plan.variants.filter((p) => isShadow(p) && stopped.has(p.instance));
    if (stops.length)
      deploy[i] = { ...d, replicas: new Map([...d.replicas, ...stops.map((p) => [p.instance, 0] as const)]) };
  }

  history = [...new Set(history)].filter((h) => h !== servingNow && h !== pending?.plan.version).slice(0, historyLimit);

  // A serving version that cannot be read (its route or its snapshot not in the cache yet, its
  // template gone) keeps what the status last said takes its traffic: nothing of it is touched.
  const unreadableServices = unreadable
    ? (status.traffic ?? []).filter((t) => !t.version || t.version === unreadable).map((t) => t.service)
    : [];
  const keepInstances = new Set<string>([
    ...deploy.flatMap((d) => [...d.replicas.keys()]),
    ...draining.flatMap((d) => d.services),
    ...(input.route?.services ?? []),
    ...unreadableServices,
  ]);
  const keepVersions = new Set<string>([
    ...(servingNow ? [servingNow] : []),
    ...(pending ? [pending.plan.version] : []),
    ...draining.map((d) => d.version),
    ...history,
  ]);

  const shares =
    serving && !input.routeBlocked
      ? pending && targetWeight > 0
        ? [
            { plan: serving, percent: 100 - targetWeight },
            { plan: pending.plan, percent: targetWeight },
          ]
        : [{ plan: serving, percent: 100 }]
      : undefined;
  // The serving version's shadows get their mirrors once they can take them; its variants, their header targets.
  const servingReplicas = serving ? instanceReplicas(serving) : undefined;
  const available = (p: VariantPlan) =>
    !stopped.has(p.instance) && input.workload(p, servingReplicas!.get(p.instance)!).available;
  return {
    draining,
    history,
    drainsDueMs,
    decision: {
      deploy,
      route: shares ? backends(shares) : undefined,
      mirrors: shares && serving ? mirrorsOf(serving, available, 'Gateway') : undefined,
      agentMirrors: shares && serving ? mirrorsOf(serving, available, 'Agent') : undefined,
      targets: shares && serving ? targetsOf(serving) : undefined,
      keepVersions,
      keepInstances,
    },
  };
}
