// The immutable snapshots of a version: the config it was built from and each model as a variant
// runs it, with what an instance records of the operator's defaults it started with. Pure.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { resources } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import {
  agentAnnotation,
  fetcherFlagsAnnotation,
  fetcherImageAnnotation,
  labels,
  podDefaultsAnnotation,
} from './labels.ts';
import { canonicalJson } from './names.ts';
import { legacyPodDefaults, type PodDefaults, type VariantPlan, type VersionPlan } from './plan.ts';
import { commonLabels, namespaced, type Desired, type EndpointContext } from './common.ts';

function snapshotLabels(endpoint: MachineLearningEndpoint, template: string, version: string): Record<string, string> {
  return {
    ...commonLabels(endpoint, 'snapshot', template),
    [labels.snapshot]: 'true',
    [labels.template]: template,
    [labels.version]: version,
  };
}

/** The immutable snapshot of the config a version was built from. */
export function configInstance(ctx: EndpointContext, plan: VersionPlan): Desired {
  return namespaced(
    resources.endpointConfig,
    ctx.endpoint,
    plan.instance,
    {
      ...snapshotLabels(ctx.endpoint, plan.config, plan.version),
      ...(plan.promoted ? { [labels.promoted]: plan.promoted } : {}),
    },
    { spec: plan.spec },
  );
}

export function configInstanceStatus(plan: VersionPlan) {
  return {
    modelVersions: plan.variants.map((v) => ({ model: v.variant.model, version: v.version, instance: v.instance })),
  };
}

/** The operator defaults a new instance starts with (see PodDefaults). */
export function currentPodDefaults(config: OperatorConfig): PodDefaults {
  return {
    spread: true,
    gpuTolerations: config.models.gpuTolerations,
    imagePullSecrets: config.models.imagePullSecrets,
  };
}

/** The defaults an instance runs with: the ones pinned to it, else the current ones. */
export const podDefaultsOf = (ctx: EndpointContext, v: VariantPlan): PodDefaults =>
  v.podDefaults ?? currentPodDefaults(ctx.config);

/**
 * The annotation that records an instance's defaults, on its snapshot and its Deployment. None for
 * an instance made before them: its objects stay exactly as that release wrote them (a controller of
 * that release, running beside this one during an upgrade, then agrees with every byte), and an
 * absent annotation on a running Deployment reads as no defaults.
 */
export function podDefaultsRecord(ctx: EndpointContext, v: VariantPlan): Record<string, string> {
  const d = podDefaultsOf(ctx, v);
  return canonicalJson(d) === canonicalJson(legacyPodDefaults) ? {} : { [podDefaultsAnnotation]: JSON.stringify(d) };
}

/** The immutable snapshot of a model as one variant of a version runs it. */
export function modelInstance(ctx: EndpointContext, v: VariantPlan): Desired {
  const fetcher = v.model.artifact
    ? {
        [fetcherImageAnnotation]: v.fetcherImage ?? ctx.config.fetcher.image,
        ...(v.fetcherFlags === false ? { [fetcherFlagsAnnotation]: 'none' } : {}),
      }
    : {};
  const agent: Record<string, string> = v.agent
    ? { [agentAnnotation]: JSON.stringify({ ...v.agent, image: v.agent.image ?? ctx.config.fetcher.image }) }
    : {};
  const annotations = { ...fetcher, ...podDefaultsRecord(ctx, v), ...agent };
  return namespaced(
    resources.model,
    ctx.endpoint,
    v.instance,
    snapshotLabels(ctx.endpoint, v.variant.model, v.version),
    { spec: v.model },
    Object.keys(annotations).length ? annotations : undefined,
  );
}
