// The endpoint's status from a rollout decision: state, the routed traffic table with ready
// replicas, and conditions that tell the truth. Ready means the serving version has every wanted
// replica ready; fewer is Degraded, a variant with none is Unavailable (its share of the traffic has
// no backend). Pure: no I/O.
import type { MachineLearningEndpointStatus, RolloutStatus, ShadowEntry, TrafficEntry } from '../api/generated.ts';
import { setConditions, type ConditionInput } from '../desired/status.ts';
import type { ComparisonFigures } from '../compare/statistics.ts';
import { isShadow, shadowMirror, type VersionPlan } from '../desired/plan.ts';
import { judgeShadowTests, shadowTestedCondition } from './shadow-tests.ts';
import { byService, type RouteBackend } from '../desired/route.ts';
import { instanceReplicas, type RolloutDecision } from './decide.ts';
import { rolloutHistoryLimit } from './advance.ts';

export interface StatusInput {
  decision: RolloutDecision;
  previous: MachineLearningEndpointStatus | undefined;
  generation: number | undefined;
  host: string;
  url: string;
  /** Ready replicas of a model instance's Deployment. */
  readyOf: (instance: string) => number;
  /** Conditions the data plane reports on the route, already named for the endpoint (RouteAccepted...). */
  routeConditions: ConditionInput[];
  /** Why the data plane gets no mirrors at all (the provider cannot mirror), if so. */
  mirroringUnavailable?: string;
  /** What the serving pods' agents say of each shadow they mirror to, by its Service. */
  comparisons?: ReadonlyMap<string, NonNullable<ShadowEntry['comparison']>>;
  /** Their exact figures since the start, by the shadow's Service, which a shadow test is judged on. */
  figures?: ReadonlyMap<string, ComparisonFigures>;
  now: Date;
}

function replicasOf(decision: RolloutDecision): Map<string, number> {
  const replicas = new Map<string, number>();
  for (const d of decision.deploy) for (const [instance, n] of d.replicas) replicas.set(instance, n);
  return replicas;
}

function table(
  route: readonly RouteBackend[],
  replicas: Map<string, number>,
  readyOf: (instance: string) => number,
): TrafficEntry[] {
  // status.traffic is a map keyed by Service: a Service two versions share is one entry.
  return byService(route).map((b) => ({
    variant: b.variant,
    version: b.version,
    modelVersion: b.modelVersion,
    service: b.service,
    weight: b.weight,
    readyReplicas: readyOf(b.service),
    replicas: replicas.get(b.service) ?? 0,
  }));
}

function waitingFor(plan: VersionPlan, replicas: Map<string, number>, readyOf: (instance: string) => number): string {
  return plan.variants
    .map((v) => `${v.instance} ${readyOf(v.instance)}/${replicas.get(v.instance) ?? 0} ready`)
    .join(', ');
}

/**
 * The ROLLOUT column of `kubectl get mle`: a rollout from the serving version to a new one while it
 * is under way (`Canary 1/2 10%`, `Paused` added while it waits for approval), or how it ended when
 * it did not promote. Nothing once the latest version serves, nor for a first version (the state
 * says how it comes up): a finished BlueGreen switch is no canary at 100%.
 */
export function rolloutSummary(
  rollout: RolloutStatus | undefined,
  servingVersion: string | undefined,
): string | undefined {
  if (!rollout?.phase || !servingVersion || rollout.version === servingVersion || rollout.phase === 'Promoted')
    return undefined;
  const strategy = rollout.strategy ?? 'BlueGreen';
  switch (rollout.phase) {
    case 'Progressing':
      return `${strategy} ${rollout.step ?? 0}/${rollout.steps ?? 1} ${rollout.weight ?? 0}%`;
    case 'Paused':
      return `${strategy} ${rollout.step ?? 0}/${rollout.steps ?? 1} ${rollout.weight ?? 0}% Paused`;
    default:
      return `${strategy} ${rollout.phase}`;
  }
}

/** The schema's bounds on status.rollout (its maxLength and maxItems). */
export const rolloutBounds = { message: 4096, smokeTest: 4096, analysisMessage: 1024, history: rolloutHistoryLimit };

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 3)}...` : text);

/**
 * status.rollout within the schema's bounds: a message quoting an answer or a query's error is cut,
 * the history keeps its latest steps. A status the API server refuses could never be written, and
 * the endpoint would stop reporting anything.
 */
export function fitted(r: RolloutStatus): RolloutStatus {
  return {
    ...r,
    ...(r.message === undefined ? {} : { message: clip(r.message, rolloutBounds.message) }),
    ...(r.smokeTest === undefined ? {} : { smokeTest: clip(r.smokeTest, rolloutBounds.smokeTest) }),
    ...(r.history ? { history: r.history.slice(-rolloutBounds.history) } : {}),
    ...(r.analysis
      ? {
          analysis: r.analysis.map((a) =>
            a.message === undefined ? a : { ...a, message: clip(a.message, rolloutBounds.analysisMessage) },
          ),
        }
      : {}),
  };
}

export function renderStatus(s: StatusInput): MachineLearningEndpointStatus {
  const { decision, previous, readyOf } = s;
  const o = decision.outcome;
  const replicas = replicasOf(decision);
  const traffic = decision.route
    ? table(decision.route, replicas, readyOf)
    : o.unreadable
      ? (previous?.traffic ?? []).map((t) => ({ ...t, readyReplicas: readyOf(t.service) }))
      : [];
  const servingVersion = o.serving?.version ?? o.unreadable;
  const conditions: ConditionInput[] = [];
  const tests = judgeShadowTests({
    serving: o.serving,
    previous,
    mirrored: (instance) => (decision.agentMirrors ?? []).some((m) => m.service === instance && m.percent > 0),
    figures: s.figures,
    now: s.now,
  });
  // A serving version that cannot be read keeps what the status said of its shadows (their tests' verdicts with it).
  const keptShadows = !o.serving && o.unreadable ? (previous?.shadows ?? []) : [];
  const shadows: ShadowEntry[] = [
    ...keptShadows,
    ...(o.serving?.variants ?? []).filter(isShadow).map((v) => {
      const test = tests.get(v.instance);
      const mirror = shadowMirror(v.variant.shadow!);
      const comparison = mirror === 'Agent' ? s.comparisons?.get(v.instance) : undefined;
      return {
        variant: v.variant.model,
        version: o.serving!.version,
        modelVersion: v.version,
        service: v.instance,
        percent: v.variant.shadow!.percent,
        mirror,
        mirrored:
          mirror === 'Agent'
            ? (decision.agentMirrors ?? []).some((m) => m.service === v.instance)
            : !s.mirroringUnavailable && (decision.mirrors ?? []).some((m) => m.service === v.instance),
        readyReplicas: readyOf(v.instance),
        replicas: replicas.get(v.instance) ?? 0,
        ...(comparison ? { comparison } : {}),
        ...(test ? { test } : {}),
      };
    }),
  ];

  const short = traffic.filter((t) => (t.readyReplicas ?? 0) < (t.replicas ?? 0));
  const empty = traffic.filter((t) => t.weight > 0 && (t.readyReplicas ?? 0) === 0);
  // Only a route the gateway has accepted serves (for providers that report it).
  const accepted = s.routeConditions.find((c) => c.type === 'RouteAccepted');
  const routeDown = accepted && accepted.status !== 'True' ? accepted : undefined;
  if (o.blocked) {
    conditions.push({ type: 'Ready', status: 'False', reason: o.blocked.reason, message: o.blocked.message });
  } else if (servingVersion) {
    const missing = o.unreadable
      ? '; its snapshots are missing, so its objects are left as they are until a new version replaces it'
      : '';
    if (routeDown) {
      conditions.push({
        type: 'Ready',
        status: 'False',
        reason: routeDown.status === 'False' ? 'RouteNotAccepted' : 'RoutePending',
        message: `config version ${servingVersion} is deployed, but its route does not serve yet: ${routeDown.message}`,
      });
    } else if (empty.length > 0) {
      conditions.push({
        type: 'Ready',
        status: 'False',
        reason: 'Unavailable',
        message: `config version ${servingVersion} serves at ${s.url}, but ${empty.map((t) => `${t.variant} (${t.service}, ${t.weight}% of the traffic) has 0/${t.replicas} replicas ready`).join(', ')}: requests routed there fail. Check its pods and events${missing}`,
      });
    } else if (short.length > 0) {
      conditions.push({
        type: 'Ready',
        status: 'False',
        reason: 'Degraded',
        message: `config version ${servingVersion} serves at ${s.url} with fewer replicas than wanted: ${short.map((t) => `${t.variant} ${t.readyReplicas}/${t.replicas} ready`).join(', ')}${missing}`,
      });
    } else {
      conditions.push({
        type: 'Ready',
        status: 'True',
        reason: 'Serving',
        message: `serving config version ${servingVersion}${o.serving ? ` (${o.serving.instance})` : ''} at ${s.url}${missing}`,
      });
    }
  } else if (o.problem) {
    conditions.push({ type: 'Ready', status: 'False', reason: o.problem.reason, message: o.problem.message });
  } else if (o.expired) {
    conditions.push({
      type: 'Ready',
      status: 'False',
      reason: 'ProgressDeadlineExceeded',
      // Its Deployments are scaled to zero by now: say what it wanted, not the 0 it runs.
      message: `the first version did not become Available within ${o.deadlineSeconds}s: ${waitingFor(o.pending!, instanceReplicas(o.pending!), readyOf)}`,
    });
  } else {
    conditions.push({
      type: 'Ready',
      status: 'False',
      reason: 'Creating',
      message: o.pending
        ? `waiting for the first version to become Available: ${waitingFor(o.pending, replicas, readyOf)}`
        : 'nothing to serve yet',
    });
  }

  if (o.progressing) {
    conditions.push(o.progressing);
  } else if (o.pending && o.expired) {
    conditions.push({
      type: 'Progressing',
      status: 'False',
      reason: 'ProgressDeadlineExceeded',
      message: `config version ${o.pending.version} did not become Available within ${o.deadlineSeconds}s; ${servingVersion ? `traffic stays on version ${servingVersion}` : 'nothing serves'}, and its Deployments are scaled to zero (its snapshots stay). Check the model's pods and events, fix the model or config and apply it, or bump spec.rollout.attempt to try the same version again.`,
    });
  } else if (o.pending) {
    conditions.push({
      type: 'Progressing',
      status: 'True',
      reason: 'NewVersionDeploying',
      message: `deploying config version ${o.pending.version}: ${waitingFor(o.pending, replicas, readyOf)}`,
    });
  } else if (servingVersion) {
    const drain = o.draining.length
      ? `; draining ${o.draining.map((d) => `${d.version} until ${d.until}`).join(', ')}`
      : '';
    conditions.push({
      type: 'Progressing',
      status: 'True',
      reason: 'NewVersionAvailable',
      message: `config version ${servingVersion} is serving${drain}`,
    });
  }
  conditions.push(
    o.problem
      ? {
          ...o.problem,
          message: servingVersion
            ? `${o.problem.message}; serving from the snapshots of config version ${servingVersion}`
            : o.problem.message,
        }
      : {
          type: 'TemplatesAvailable',
          status: 'True',
          reason: 'Resolved',
          message: 'the config and every model it names exist',
        },
  );
  conditions.push(...s.routeConditions);
  if (shadows.length > 0) {
    // A shadow its test stopped is not mirrored to on purpose: not a shadow waiting to be ready.
    const stopped = (x: ShadowEntry) => x.test?.phase === 'Failed' && x.test.action === 'Stop';
    const notMirrored = shadows.filter((x) => !x.mirrored && !stopped(x));
    conditions.push(
      s.mirroringUnavailable && shadows.some((x) => x.mirror === 'Gateway')
        ? { type: 'ShadowsMirrored', status: 'False', reason: 'MirroringUnavailable', message: s.mirroringUnavailable }
        : notMirrored.length > 0
          ? {
              type: 'ShadowsMirrored',
              status: 'False',
              reason: 'ShadowNotReady',
              message: `not mirrored until they are ready (primary traffic is unaffected): ${notMirrored.map((x) => `${x.variant} (${x.service}) ${x.readyReplicas}/${x.replicas} ready`).join(', ')}`,
            }
          : {
              type: 'ShadowsMirrored',
              status: 'True',
              reason: 'Mirrored',
              message: shadows
                .map((x) =>
                  stopped(x)
                    ? `${x.variant} (${x.service}) stopped by its shadow test (see ShadowTested)`
                    : `${x.percent}% of the requests mirrored to ${x.variant} (${x.service}) by the ${x.mirror === 'Agent' ? "serving pods' agents, answers compared" : 'gateway'}`,
                )
                .join(', '),
            },
    );
  }

  const tested = o.serving
    ? shadowTestedCondition(o.serving, tests)
    : o.unreadable
      ? previous?.conditions?.find((c) => c.type === 'ShadowTested')
      : undefined;
  if (tested)
    conditions.push({ type: tested.type, status: tested.status, reason: tested.reason, message: tested.message });

  const summary = rolloutSummary(o.rollout, servingVersion);
  // READY counts what takes traffic; before anything does, the first version coming up (not 0/0).
  const counted =
    traffic.length > 0 || servingVersion || !o.pending
      ? traffic
      : o.pending.variants
          .filter((v) => !isShadow(v))
          .map((v) => ({ readyReplicas: readyOf(v.instance), replicas: replicas.get(v.instance) ?? 0 }));
  const wanted = counted.reduce((n, t) => n + (t.replicas ?? 0), 0);
  const ready = counted.reduce((n, t) => n + Math.min(t.readyReplicas ?? 0, t.replicas ?? 0), 0);
  let state: MachineLearningEndpointStatus['state'];
  // The first version is still being created until the gateway has taken its route.
  const servedBefore =
    previous?.state === 'InService' || previous?.state === 'Updating' || previous?.state === 'RollingBack';
  // A route that cannot be written serves nothing.
  if (o.blocked) state = 'Failed';
  else if (servingVersion && routeDown?.status === 'Unknown' && !servedBefore) state = 'Creating';
  else if (servingVersion) state = o.pending && !o.expired ? (o.rollingBack ? 'RollingBack' : 'Updating') : 'InService';
  else state = o.expired ? 'Failed' : 'Creating';
  return {
    observedGeneration: s.generation,
    state,
    ...(servingVersion ? { endpointConfigVersion: servingVersion } : {}),
    // Pending means on its way: a version that failed, was rolled back or aborted is not (status.rollout and the Progressing condition say what became of it).
    ...(o.pending && !o.expired
      ? { pendingEndpointConfigVersion: o.pending.version, pendingSince: o.pendingSince }
      : {}),
    host: s.host,
    url: s.url,
    ready: `${ready}/${wanted}`,
    traffic,
    ...(shadows.length ? { shadows } : {}),
    history: o.history,
    ...(o.draining.length ? { draining: o.draining } : {}),
    ...(o.rollout ? { rollout: fitted(o.rollout) } : {}),
    ...(summary ? { rolloutSummary: summary } : {}),
    ...(o.preview ? { preview: o.preview } : {}),
    conditions: setConditions(previous?.conditions, conditions, s.generation, s.now),
  };
}

/**
 * A status that only reports how a first version comes up (Creating, then RoutePending) may wait a
 * moment, so that its progress is written in few writes. One that records a version serving may
 * not: the next round reads it back to know what the route sends traffic to, and must not decide
 * (or collect garbage) on a status that does not say so yet.
 */
export function progressOnly(
  previous: MachineLearningEndpointStatus | undefined,
  next: MachineLearningEndpointStatus,
  deleting: boolean,
): boolean {
  if (deleting || previous?.endpointConfigVersion || next.endpointConfigVersion) return false;
  const ready = next.conditions?.find((c) => c.type === 'Ready');
  return ready?.reason === 'Creating' || ready?.reason === 'RoutePending';
}
