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
import type { RolloutPreview, RolloutStatus } from '../api/generated.ts';
import { quantityValue } from '../desired/compare.ts';
import { fixedReplicas, isShadow, type VariantPlan, type VersionPlan } from '../desired/plan.ts';
import { findCondition, iso, type ConditionInput } from '../desired/status.ts';
import { failing, unsettled } from './analysis.ts';
import {
  defaults,
  instanceReplicas,
  type Deployed,
  type Outcome,
  type RolloutDecision,
  type RolloutEvent,
  type RolloutInput,
} from './decision.ts';
import { observe, servicesOf as servicesOfVersion, settle, withDrain } from './phases.ts';
import { planFingerprint, planOf, type Step } from './strategies.ts';

export * from './decision.ts';

const failedPhases = new Set(['Failed', 'RolledBack', 'Aborted']);

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
  const { servingVersion, unreadable } = observed;
  const { canary } = observed;
  let { serving, history, draining } = observed;
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
    // A first version has nothing to share the traffic with: it takes all of it at once.
    const steps = serving ? planOf(rolloutSpec) : planOf({});
    const strategy = serving ? (rolloutSpec.strategy ?? 'BlueGreen') : 'BlueGreen';
    preview = previewOf(target, serving, steps, deadlineSeconds);
    // The rollout of this version under this spec, as status last recorded it.
    const fingerprint = planFingerprint(rolloutSpec);
    const recorded =
      status.rollout?.version === target.version && status.rollout.plan === fingerprint ? status.rollout : undefined;
    const base: RolloutStatus = {
      version: target.version,
      strategy,
      steps: steps.length,
      plan: fingerprint,
      ...(recorded?.history ? { history: recorded.history } : {}),
    };
    const weightNow = canary?.version === target.version ? canary.weight : 0;

    // While it rolls out, an instance both versions share runs the larger of their replica counts:
    // the pending version never takes capacity away from the serving one.
    const replicas = instanceReplicas(target);
    const servingReplicas = serving ? instanceReplicas(serving) : new Map<string, number>();
    for (const [instance, n] of replicas)
      if (servingReplicas.has(instance)) replicas.set(instance, Math.max(n, servingReplicas.get(instance)!));
    const targetServices = target.variants.map((v) => v.instance).filter((s) => !servingReplicas.has(s));

    const previousProgressing = findCondition(status.conditions, 'Progressing');
    // A failed version is not pending any more: status.rollout names it (a status of an older release, the pending version).
    const failedVersion = status.pendingEndpointConfigVersion ?? status.rollout?.version;
    const deadlineFailed =
      previousProgressing?.reason === 'ProgressDeadlineExceeded' &&
      failedVersion === target.version &&
      previousProgressing.observedGeneration === input.generation;
    /** Ends this attempt: all traffic back to the serving version in one write; what took traffic drains, then scales to zero. */
    const fail = (phase: 'Failed' | 'RolledBack' | 'Aborted', reason: string, message: string) => {
      expired = true;
      targetWeight = 0;
      if (weightNow > 0) drain(target.version, targetServices);
      rollout = { ...base, phase, step: 0, weight: 0, message };
      progressing = {
        type: 'Progressing',
        status: 'False',
        reason,
        message: `${message}; ${servingVersion ? `all traffic is on version ${servingVersion}` : 'nothing serves'}. Fix the model or config and apply it, or bump spec.rollout.attempt to try this version again.`,
      };
      // The Event comes with the condition turning False (the reconciler records each such transition).
      ended = reason;
    };

    // Rolled back, aborted, or failed its smoke test under this plan: no retry until the plan (or the
    // attempt) changes. A deadline that ran out holds for this generation of the spec only.
    const failedBefore =
      deadlineFailed ||
      (recorded?.phase !== undefined &&
        failedPhases.has(recorded.phase) &&
        (recorded.phase !== 'Failed' || recorded.smokeTest?.startsWith('Failed') === true));
    const same =
      status.pendingEndpointConfigVersion === target.version &&
      status.pendingSince !== undefined &&
      !(previousProgressing?.reason === 'ProgressDeadlineExceeded' && !deadlineFailed);
    pendingSince = same ? status.pendingSince! : iso(now);

    if (failedBefore) {
      expired = true;
      rollout = recorded ?? { ...base, phase: 'Failed', step: 0, weight: 0, message: previousProgressing?.message };
      progressing = deadlineFailed
        ? {
            type: 'Progressing',
            status: 'False',
            reason: 'ProgressDeadlineExceeded',
            message: previousProgressing.message,
          }
        : undefined;
      // The condition the failure set (AnalysisFailed, CanaryUnavailable, SmokeTestFailed, ...) stays as it was.
      if (!progressing && recorded) {
        progressing =
          previousProgressing?.status === 'False' && previousProgressing.reason !== 'ProgressDeadlineExceeded'
            ? {
                type: 'Progressing',
                status: 'False',
                reason: previousProgressing.reason,
                message: previousProgressing.message,
              }
            : {
                type: 'Progressing',
                status: 'False',
                reason:
                  recorded.phase === 'Aborted'
                    ? 'Aborted'
                    : recorded.phase === 'RolledBack'
                      ? 'RolledBack'
                      : 'RolloutFailed',
                message: recorded.message ?? '',
              };
      }
    } else if (rolloutSpec.abortVersion === target.version) {
      fail(
        'Aborted',
        'Aborted',
        `the rollout of config version ${target.version} was aborted (spec.rollout.abortVersion)`,
      );
    } else if (rolloutSpec.dryRun) {
      rollout = {
        ...base,
        phase: 'Planned',
        step: 0,
        weight: 0,
        message: 'dry run: status.preview shows the plan; nothing of the new version is created',
      };
      progressing = {
        type: 'Progressing',
        status: 'True',
        reason: 'DryRun',
        message: `dry run of config version ${target.version}: ${preview.steps!.map((s) => `${s.weight}% for ${s.seconds}s`).join(', ')}; adds ${preview.replicas} replicas (${preview.cpus} CPUs, ${preview.memory}, ${preview.gpus} GPUs); at most ${preview.worstCaseSeconds}s. Set spec.rollout.dryRun to false to start it.`,
      };
    } else if (input.capacity && !input.capacity.ok && weightNow === 0) {
      rollout = { ...base, phase: 'Progressing', step: 0, weight: 0, message: input.capacity.message };
      progressing = {
        type: 'Progressing',
        status: 'False',
        reason: 'InsufficientCapacity',
        message: `config version ${target.version} is not started: ${input.capacity.message}`,
      };
      requeueIn(30_000);
    } else {
      // Shadows never hold up a switch: only the variants that take traffic must be Available.
      const available =
        !input.routeBlocked &&
        target.variants
          .filter((v) => !isShadow(v))
          .every((v) => input.workload(v, replicas.get(v.instance)!).available);
      const elapsedMs = now.getTime() - Date.parse(pendingSince);
      const checks = rolloutSpec.analysis?.checks ?? [];
      const bad = weightNow > 0 ? failing(checks, input.analysis ?? []) : undefined;
      if (!available && weightNow > 0) {
        fail(
          'RolledBack',
          'CanaryUnavailable',
          `config version ${target.version} lost ready replicas while it took ${weightNow}% of the traffic`,
        );
      } else if (bad) {
        fail('RolledBack', 'AnalysisFailed', `check ${bad.why}`);
      } else if (!available) {
        expired = !input.routeBlocked && elapsedMs >= deadlineSeconds * 1000;
        if (!expired && !input.routeBlocked) requeueIn(deadlineSeconds * 1000 - elapsedMs + 1000);
        rollout = { ...base, phase: 'Progressing', step: 0, weight: 0 };
        if (expired)
          rollout = { ...rollout, phase: 'Failed', message: `did not become Available within ${deadlineSeconds}s` };
      } else if (rolloutSpec.smokeTest && weightNow === 0 && !recorded?.smokeTest?.startsWith('Passed')) {
        const result = input.smokeTest;
        if (result && !result.passed) {
          fail(
            'Failed',
            'SmokeTestFailed',
            `the smoke test of config version ${target.version} failed: ${result.message}`,
          );
          rollout = { ...rollout!, smokeTest: `Failed: ${result.message}` };
        } else if (result?.passed) {
          rollout = { ...base, phase: 'Progressing', step: 0, weight: 0, smokeTest: `Passed: ${result.message}` };
          requeueIn(0);
        } else {
          rollout = { ...base, phase: 'Progressing', step: 0, weight: 0, message: 'waiting for the smoke test' };
          requeueIn(1000);
        }
      } else {
        // The step the route is at: the last planned step at or below the weight the route gives it;
        // none (-1) when the route is below the first (a plan changed mid-rollout): that step is next.
        const at = weightNow === 0 ? -1 : steps.reduce((k, s, i) => (s.weight <= weightNow ? i : k), -1);
        const stepNumber = at + 1;
        // A restarted controller (or a route ahead of the status) starts the bake now: never skips one.
        const startedAt = recorded?.step === stepNumber && recorded.stepStartedAt ? recorded.stepStartedAt : iso(now);
        const bakeMs = at >= 0 ? steps[at].seconds * 1000 : 0;
        const baked = at < 0 || now.getTime() - Date.parse(startedAt) >= bakeMs;
        const next = at + 1;
        const approval =
          next === steps.length - 1 &&
          rolloutSpec.approval?.beforePromotion &&
          rolloutSpec.approvedVersion !== target.version &&
          at >= 0;
        const smoke = recorded?.smokeTest ? { smokeTest: recorded.smokeTest } : {};
        const analysis =
          at >= 0 && input.analysis?.length
            ? { analysis: input.analysis }
            : recorded?.analysis
              ? { analysis: recorded.analysis }
              : {};
        // A baked step moves on once every check passed during it; inconclusive ones hold it.
        const waiting = at >= 0 && baked ? unsettled(checks, input.analysis ?? [], startedAt) : [];
        if (waiting.length > 0) {
          targetWeight = weightNow;
          const why = waiting
            .map(({ check, record }) =>
              record?.result && record.evaluatedAt && Date.parse(record.evaluatedAt) >= Date.parse(startedAt)
                ? record.message
                : `${check.name}: not evaluated during this step yet`,
            )
            .join('; ');
          rollout = {
            ...base,
            ...smoke,
            ...analysis,
            phase: 'Progressing',
            step: stepNumber,
            weight: weightNow,
            stepStartedAt: startedAt,
            message: `step baked; holding for the checks: ${why}`,
            history: base.history ?? [],
          };
          progressing = {
            type: 'Progressing',
            status: 'True',
            reason: 'AnalysisPending',
            message: `config version ${target.version}: step ${stepNumber} of ${steps.length} (${strategy}), ${weightNow}% of the traffic, baked; holding for the checks: ${why}`,
          };
        } else if (!baked) {
          targetWeight = weightNow;
          const due = Date.parse(startedAt) + bakeMs;
          requeueIn(due - now.getTime() + 200);
          rollout = {
            ...base,
            ...smoke,
            ...analysis,
            phase: 'Progressing',
            step: stepNumber,
            weight: weightNow,
            stepStartedAt: startedAt,
            nextStepAt: iso(new Date(due)),
            history: base.history ?? [],
          };
          progressing = {
            type: 'Progressing',
            status: 'True',
            reason: 'RolloutProgressing',
            message: `config version ${target.version}: step ${stepNumber} of ${steps.length} (${strategy}), ${weightNow}% of the traffic, next step at ${iso(new Date(due))}`,
          };
        } else if (approval) {
          targetWeight = weightNow;
          rollout = {
            ...base,
            ...smoke,
            ...analysis,
            phase: 'Paused',
            step: stepNumber,
            weight: weightNow,
            stepStartedAt: startedAt,
            message: 'waiting for approval',
            history: base.history ?? [],
          };
          progressing = {
            type: 'Progressing',
            status: 'True',
            reason: 'WaitingForApproval',
            message: `config version ${target.version} takes ${weightNow}% of the traffic and waits for approval: set spec.rollout.approvedVersion to ${target.version} to send it all the traffic, or spec.rollout.abortVersion to ${target.version} to send it none`,
          };
        } else if (steps[next].weight >= 100) {
          // Promotion: all traffic to the new version in one write; the previous one drains.
          switched = { from: servingVersion, to: target.version };
          if (servingVersion) {
            drain(
              servingVersion,
              servicesOf(serving, servingVersion).filter((s) => !target.variants.some((v) => v.instance === s)),
            );
            history = [servingVersion, ...history];
          }
          serving = target;
          rollout = {
            ...base,
            ...smoke,
            ...analysis,
            phase: 'Promoted',
            step: steps.length,
            weight: 100,
            stepStartedAt: iso(now),
            history: [...(base.history ?? []), { step: steps.length, weight: 100, startedAt: iso(now) }],
          };
        } else {
          targetWeight = steps[next].weight;
          const due = now.getTime() + steps[next].seconds * 1000;
          requeueIn(steps[next].seconds * 1000 + 200);
          rollout = {
            ...base,
            ...smoke,
            ...analysis,
            phase: 'Progressing',
            step: next + 1,
            weight: targetWeight,
            stepStartedAt: iso(now),
            nextStepAt: iso(new Date(due)),
            history: [...(base.history ?? []), { step: next + 1, weight: targetWeight, startedAt: iso(now) }],
          };
          progressing = {
            type: 'Progressing',
            status: 'True',
            reason: 'RolloutProgressing',
            message: `config version ${target.version}: step ${next + 1} of ${steps.length} (${strategy}), ${targetWeight}% of the traffic, next step at ${iso(new Date(due))}`,
          };
          events.push({
            type: 'Normal',
            reason: 'RolloutStep',
            message: `config version ${target.version} takes ${targetWeight}% of the traffic (step ${next + 1} of ${steps.length})`,
          });
        }
      }
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
