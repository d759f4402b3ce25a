// The rollout decision: which version serves, which one rolls out and at which step, which ones
// drain, what each runs with, what the route carries, and what the endpoint's status says. Pure: the
// reconciler reads the caches (and runs the metric gates and the smoke test) into a RolloutInput and
// carries out the RolloutDecision; nothing here does I/O, so every case is a table test.
//
// The live route is the truth of what serves: it names the versions it routes to and their shares.
// Status mirrors it and records what the route cannot: the rollout's step and when it began (so a
// restarted controller resumes the same step and never skips a bake), the versions draining after
// a switch (with their Services), the pending version and since when, and the history.
//
// Strategies are plans of steps (strategies.ts); BlueGreen is the plan of one step, all the traffic.
// The phases, each pure with its own tests: what serves (phases.ts, observe), the verdict on the
// pending version (verdict.ts), its steps (advance.ts), then drains, what is kept and the route
// (phases.ts, settle). This file assembles them.
import type { RolloutPreview, RolloutStatus } from '../api/generated.ts';
import { quantityValue } from '../desired/compare.ts';
import { fixedReplicas, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import { findCondition, iso, type ConditionInput } from '../desired/status.ts';
import { advance } from './advance.ts';
import {
  defaults,
  instanceReplicas,
  type Deployed,
  type Outcome,
  type RolloutDecision,
  type RolloutEvent,
  type RolloutInput,
} from './decision.ts';
import { observe, servicesOf as servicesOfVersion, settle, withDrain, type Observation } from './phases.ts';
import { planFingerprint, planOf, type Step } from './strategies.ts';
import { deadlineRanOut, gated, prejudged, type Attempt } from './verdict.ts';

export * from './decision.ts';

/** What the new version adds beside the serving one: its instances that the serving version does not run. */
function previewOf(
  target: VersionPlan,
  serving: VersionPlan | undefined,
  steps: Step[],
  deadlineSeconds: number,
): RolloutPreview {
  const shared = new Set(serving?.variants.map((v) => v.instance) ?? []);
  const added = target.variants.filter((v) => !shared.has(v.instance));
  const count = (v: VariantPlan) => v.variant.autoscaling?.minInstances ?? fixedReplicas(v);
  const replicas = added.reduce((n, v) => n + count(v), 0);
  const sum = (q: (v: VariantPlan) => string | number | undefined) =>
    added.reduce((n, v) => n + count(v) * (quantityValue(q(v) ?? 0) ?? 0), 0);
  const cpus = sum((v) => v.variant.cpus);
  const memory = sum((v) => v.variant.memory);
  return {
    version: target.version,
    steps: steps.map((s) => ({ weight: s.weight, seconds: s.seconds })),
    replicas,
    cpus: String(Math.round(cpus * 1000) / 1000),
    memory: `${Math.ceil(memory / 2 ** 20)}Mi`,
    gpus: added.reduce((n, v) => n + count(v) * (v.variant.gpus ?? 0), 0),
    worstCaseSeconds: deadlineSeconds + steps.reduce((n, s) => n + s.seconds, 0),
  };
}

/** The attempt to roll out `target` this round, as the status and the live route leave it. */
function attemptOf(
  input: RolloutInput,
  target: VersionPlan,
  observed: Observation,
  servingReplicas: Map<string, number>,
  deadlineSeconds: number,
): Attempt {
  const { status, now } = input;
  const spec = input.spec.rollout ?? {};
  const { serving, servingVersion, canary } = observed;
  // A first version has nothing to share the traffic with: it takes all of it at once.
  const steps = serving ? planOf(spec) : planOf({});
  const strategy = serving ? (spec.strategy ?? 'BlueGreen') : 'BlueGreen';
  // The rollout of this version under this spec, as status last recorded it.
  const fingerprint = planFingerprint(spec);
  const recorded =
    status.rollout?.version === target.version && status.rollout.plan === fingerprint ? status.rollout : undefined;
  const base: RolloutStatus = {
    version: target.version,
    strategy,
    steps: steps.length,
    plan: fingerprint,
    ...(recorded?.history ? { history: recorded.history } : {}),
  };
  // While it rolls out, an instance both versions share runs the larger of their replica counts:
  // the pending version never takes capacity away from the serving one.
  const replicas = instanceReplicas(target);
  for (const [instance, n] of replicas)
    if (servingReplicas.has(instance)) replicas.set(instance, Math.max(n, servingReplicas.get(instance)!));
  // Pending since the status says, unless a deadline of an earlier generation ran out: then from now.
  const previous = findCondition(status.conditions, 'Progressing');
  const same =
    status.pendingEndpointConfigVersion === target.version &&
    status.pendingSince !== undefined &&
    !(previous?.reason === 'ProgressDeadlineExceeded' && !deadlineRanOut(input, target.version));
  return {
    input,
    spec,
    target,
    servingVersion,
    steps,
    strategy,
    base,
    recorded,
    weightNow: canary?.version === target.version ? canary.weight : 0,
    replicas,
    pendingSince: same ? status.pendingSince! : iso(now),
    deadlineSeconds,
    preview: previewOf(target, serving, steps, deadlineSeconds),
  };
}

export function decide(input: RolloutInput): RolloutDecision {
  const { spec, status, target, now } = input;
  const rolloutSpec = spec.rollout ?? {};
  const deadlineSeconds = rolloutSpec.progressDeadlineSeconds ?? defaults.progressDeadlineSeconds;
  const drainSeconds = rolloutSpec.drainSeconds ?? defaults.drainSeconds;
  const historyLimit = spec.historyLimit ?? defaults.historyLimit;
  const events: RolloutEvent[] = [];
  const drainUntil = iso(new Date(now.getTime() + drainSeconds * 1000));
  let requeueAfterMs: number | undefined;
  const requeueIn = (ms: number) => (requeueAfterMs = Math.max(1000, Math.min(requeueAfterMs ?? Infinity, ms)));

  // What serves, and what drains already.
  const observed = observe(input, drainUntil);
  const { servingVersion } = observed;
  let { serving, unreadable, history, draining } = observed;
  const drain = (version: string, services: string[]) =>
    (draining = withDrain(draining, version, services, drainUntil));
  const servicesOf = (p: VersionPlan | undefined, version: string) => servicesOfVersion(status, p, version);

  let pending: Deployed | undefined;
  let pendingSince: string | undefined;
  let expired = false;
  let switched: Outcome['switched'];
  let rollout: RolloutStatus | undefined;
  let preview: RolloutPreview | undefined;
  let progressing: ConditionInput | undefined;
  let ended: string | undefined;
  /** The target's share of the traffic to write (undefined: all of it to the serving version). */
  let targetWeight = 0;

  if (target && target.version !== servingVersion) {
    const servingReplicas = serving ? instanceReplicas(serving) : new Map<string, number>();
    const attempt = attemptOf(input, target, observed, servingReplicas, deadlineSeconds);
    ({ preview, pendingSince } = attempt);
    const { weightNow, replicas } = attempt;
    const targetServices = target.variants.map((v) => v.instance).filter((s) => !servingReplicas.has(s));
    // The verdict first (over before, held, a gate failed); else the steps go on.
    const move = prejudged(attempt) ?? gated(attempt) ?? advance(attempt);
    ({ rollout, progressing, ended } = move);
    expired = move.expired ?? false;
    targetWeight = move.targetWeight ?? 0;
    if (move.requeueMs !== undefined) requeueIn(move.requeueMs);
    events.push(...(move.events ?? []));
    // An attempt that ended takes its share back: what took traffic drains, then scales to zero.
    if (move.ended && weightNow > 0) drain(target.version, targetServices);
    if (move.promote) {
      switched = { from: servingVersion, to: target.version };
      if (servingVersion) {
        drain(
          servingVersion,
          servicesOf(serving, servingVersion).filter((s) => !target.variants.some((v) => v.instance === s)),
        );
        history = [servingVersion, ...history];
      }
      serving = target;
      // A serving version that could not be read (its snapshots gone) serves no more: it drains.
      unreadable = undefined;
    }
    if (serving !== target) {
      // A failed version holds no capacity once its drain is over: what it does not share with the
      // serving version, and no longer drains, scales to zero.
      if (expired) {
        const stillDraining = new Set(draining.flatMap((d) => d.services));
        for (const instance of replicas.keys())
          if (!servingReplicas.has(instance) && !stillDraining.has(instance)) replicas.set(instance, 0);
      }
      if (!rolloutSpec.dryRun && !(input.capacity && !input.capacity.ok && weightNow === 0))
        pending = { plan: target, replicas };
    }
  } else if (target && status.rollout?.version === target.version) {
    rollout = status.rollout;
  }
  const settled = settle(
    input,
    { serving, unreadable, pending, switched, targetWeight, draining, history },
    historyLimit,
  );
  ({ draining, history } = settled);
  for (const ms of settled.drainsDueMs) requeueIn(ms);
  return {
    ...settled.decision,
    requeueAfterMs,
    outcome: {
      serving,
      unreadable,
      pending: pending?.plan,
      pendingSince: pending ? pendingSince : undefined,
      rollingBack: pending !== undefined && (status.history ?? []).includes(pending.plan.version),
      expired,
      switched,
      draining,
      history,
      deadlineSeconds,
      problem: input.problem,
      blocked: input.routeBlocked,
      rollout,
      preview: target && target.version !== servingVersion ? preview : undefined,
      progressing,
      ended,
      events,
    },
  };
}
