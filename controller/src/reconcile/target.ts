// The version an endpoint is to serve, from what the reconciler read, in one pure function: the one
// its templates resolve to (or the promoted one, when a shadow test passed with onPass: Promote), or
// the kept one spec.serveVersion pins; with every rule that refuses a version (a missing template,
// after its grace; autoscaling the cluster cannot carry) and every rule that keeps an upgrade from
// restarting model pods (Templates.pin). desiredState() calls it; the reconciler's Resolver reads
// the caches into Templates.
import type {
  MachineLearningEndpoint,
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../api/generated.ts';
import { autoscalingProblem } from '../desired/autoscaling.ts';
import { planFromTemplates, rolloutAsksAgents, type VersionPlan } from '../desired/plan.ts';
import type { ConditionInput } from '../desired/status.ts';
import type { OperatorConfig } from '../options/config.ts';
import { promotedPlan, promotingShadow, promotionRecord } from '../rollout/shadow-tests.ts';
import { missingTemplates, type Resolved } from './missing-templates.ts';

/** What the templates and the kept versions say, as read by the reconciler (or given by a test). */
export interface Templates {
  /** The config spec.config names; undefined when none exists. `snapshot`: the name is a snapshot's, not a template's. */
  config?: { spec: MachineLearningEndpointConfigSpec; snapshot?: boolean };
  /** The model templates that exist (snapshots are not templates), by name. */
  models: ReadonlyMap<string, MachineLearningModelSpec>;
  /** A kept version, rebuilt from its snapshots (undefined: never kept, or its snapshots cannot be read). */
  kept(version: string): VersionPlan | undefined;
  /** Whether a config snapshot of the endpoint carries this promotion mark (a promotion that already began). */
  promotionMarked(promoted: string): boolean;
  /**
   * The plan as the instances that run it started: each keeps the fetcher, pod defaults and agent image
   * it was made with, so that upgrading the controller restarts no model pod. The identity where none runs.
   */
  pin(plan: VersionPlan): VersionPlan;
  /** The cluster serves no API of the chart's autoscaling engine. */
  autoscalersMissing?: boolean;
}

/** The version the endpoint asks for, or why there is none (and when to look again); pinned. */
export function resolveTarget(
  endpoint: MachineLearningEndpoint,
  templates: Templates,
  config: OperatorConfig,
  now: Date,
): Resolved {
  const resolved = checkAutoscaling(unpinnedTarget(endpoint, templates, now), templates, config);
  return resolved.target ? { ...resolved, target: templates.pin(resolved.target) } : resolved;
}

function unpinnedTarget(endpoint: MachineLearningEndpoint, templates: Templates, now: Date): Resolved {
  // A template missing is waited for a while, unless the serving version was made from it.
  const missing = (problem: ConditionInput, what: string, names: string[]): Resolved => {
    const serving = endpoint.status?.endpointConfigVersion;
    const plan = serving ? templates.kept(serving) : undefined;
    const servedFrom = plan ? [plan.config, ...plan.variants.map((v) => v.variant.model)] : serving ? null : undefined;
    const previous = endpoint.status?.conditions?.find((c) => c.type === problem.type);
    return missingTemplates({ problem, what, names, servedFrom, previous, now });
  };
  // A version pinned by spec.serveVersion comes from its snapshots, whatever the templates say now.
  const pinned = endpoint.spec.serveVersion;
  if (pinned) {
    const plan = templates.kept(pinned);
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
  const namespace = endpoint.metadata.namespace!;
  const configName = endpoint.spec.config;
  const config = templates.config;
  if (config?.snapshot) {
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
  const resolution = planFromTemplates(
    endpoint.metadata.name!,
    configName,
    config.spec,
    templates.models,
    rolloutAsksAgents(endpoint.spec.rollout),
  );
  if (resolution.ok) return { target: promoted(endpoint, resolution.plan, templates) };
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
function promoted(endpoint: MachineLearningEndpoint, plan: VersionPlan, templates: Templates): VersionPlan {
  const shadow = promotingShadow(plan);
  if (!shadow) return plan;
  const status = endpoint.status;
  const record = promotionRecord(plan, status);
  if (record && record.phase !== 'Passed') return plan;
  const derived = promotedPlan(endpoint.metadata.name!, plan, shadow);
  if (record) return derived;
  if (status?.endpointConfigVersion === derived.version || status?.pendingEndpointConfigVersion === derived.version)
    return derived;
  return templates.promotionMarked(derived.promoted!) ? derived : plan;
}

/** A version whose autoscaling the cluster or the chart's engine cannot carry does not roll out: the endpoint says why. */
function checkAutoscaling(resolved: Resolved, templates: Templates, config: OperatorConfig): Resolved {
  if (!resolved.target) return resolved;
  const problem = autoscalingProblem(config, resolved.target.variants);
  if (problem) return { problem };
  if (templates.autoscalersMissing && resolved.target.variants.some((v) => v.variant.autoscaling)) {
    const api =
      config.autoscaling.engine === 'keda'
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
