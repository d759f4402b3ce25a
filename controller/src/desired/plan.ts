// Which version an endpoint should serve: the config and model versions that a config and its
// models resolve to, or that a snapshot (instance) recorded. Pure: no I/O.
import type { MachineLearningEndpointConfig, MachineLearningEndpointConfigSpec, MachineLearningEndpointConfigVariant, MachineLearningModel, MachineLearningModelSpec } from '../api/generated.ts';
import { fetcherFlagsAnnotation, fetcherImageAnnotation, labels, podDefaultsAnnotation } from './labels.ts';
import { contentVersion, versionedName } from './names.ts';
import type { Toleration } from '../options.ts';

/**
 * What a model pod gets from the operator's config and this release rather than from its version:
 * the chart's GPU tolerations and pull secrets, and the default spread over nodes. An instance keeps
 * the defaults it started with (see podDefaultsAnnotation), so that an upgrade or a changed chart
 * value restarts no running pod; new instances get the current ones.
 */
export interface PodDefaults {
  /** Spread the variant's replicas over nodes when it gives no topologySpreadConstraints. */
  spread: boolean;
  /** Tolerations of a variant with GPUs that gives none of its own. */
  gpuTolerations: Toleration[];
  /** Pull secrets before the model's own. */
  imagePullSecrets: string[];
}

/** The defaults of an instance whose Deployment a release before them made: none. */
export const legacyPodDefaults: PodDefaults = { spread: false, gpuTolerations: [], imagePullSecrets: [] };

export interface VariantPlan {
  /** The variant as the config states it (model, weight, instances, resources). */
  variant: MachineLearningEndpointConfigVariant;
  /** Spec of the model template (or of its snapshot). */
  model: MachineLearningModelSpec;
  /** m_version. */
  version: string;
  /** `<model>-<m_version>`: the model instance, its Deployment, Service and storage. */
  instance: string;
  /** The artifact fetcher image this instance runs with, once pinned (see fetcherImageAnnotation). */
  fetcherImage?: string;
  /** False when that pinned fetcher takes no flags, only `URI TARGET` (see fetcherFlagsAnnotation). */
  fetcherFlags?: boolean;
  /** False when this instance's running server has no preStop hook (made before it had one): it keeps its pod template. */
  preStop?: boolean;
  /** The operator's defaults this instance runs with, once pinned; absent: the current ones. */
  podDefaults?: PodDefaults;
}

export interface VersionPlan {
  /** Name of the config template the version comes from. */
  config: string;
  spec: MachineLearningEndpointConfigSpec;
  /** ec_version. */
  version: string;
  /** `<config>-<ec_version>`: the config instance. */
  instance: string;
  variants: VariantPlan[];
}

/** A shadow variant: it receives a mirror of the traffic, never a share of it. */
export const isShadow = (v: VariantPlan): boolean => v.variant.shadow !== undefined;

/** The replicas a variant runs without an autoscaler (with one, the autoscaler decides). */
export const fixedReplicas = (v: VariantPlan): number => v.variant.instances ?? 1;

/**
 * What a variant's version depends on besides the model: its resources and its placement, never
 * weight or instances. Absent fields are left out of the hash, so that variants made before a field
 * existed keep their version.
 */
function variantResources(v: MachineLearningEndpointConfigVariant) {
  return {
    cpus: v.cpus,
    memory: v.memory,
    gpus: v.gpus,
    gpuResource: v.gpuResource,
    size: v.size,
    path: v.path,
    nodeSelector: v.nodeSelector,
    tolerations: v.tolerations,
    affinity: v.affinity,
    topologySpreadConstraints: v.topologySpreadConstraints,
    priorityClassName: v.priorityClassName,
  };
}

export function modelVersion(endpoint: string, model: MachineLearningModelSpec, variant: MachineLearningEndpointConfigVariant): string {
  return contentVersion({ endpoint, model, resources: variantResources(variant) });
}

export type Resolution =
  | { ok: true; plan: VersionPlan }
  | { ok: false; reason: 'ModelNotFound'; missing: string[] };

/** Resolves a config template and the model templates it names into the version to serve. */
export function planFromTemplates(endpoint: string, configName: string, config: MachineLearningEndpointConfigSpec, models: ReadonlyMap<string, MachineLearningModelSpec>): Resolution {
  const missing = config.models.map((v) => v.model).filter((m) => !models.has(m));
  if (missing.length > 0) return { ok: false, reason: 'ModelNotFound', missing };
  const variants = config.models.map((variant) => {
    const model = models.get(variant.model)!;
    const version = modelVersion(endpoint, model, variant);
    return { variant, model, version, instance: versionedName(variant.model, version) };
  });
  const version = contentVersion({ endpoint, config, models: variants.map((v) => [v.variant.model, v.version]) });
  return { ok: true, plan: { config: configName, spec: config, version, instance: versionedName(configName, version), variants } };
}

/**
 * Rebuilds the plan of a version from its snapshots, for when a template is gone or another version
 * is rolling out. Undefined when a snapshot is missing: then nothing of that version is touched.
 */
export function planFromSnapshot(configInstance: MachineLearningEndpointConfig, modelInstances: ReadonlyMap<string, MachineLearningModel>): VersionPlan | undefined {
  const meta = configInstance.metadata;
  const version = meta.labels?.[labels.version];
  const template = meta.labels?.[labels.template];
  const resolved = configInstance.status?.modelVersions;
  if (!version || !template || !resolved) return undefined;
  const variants: VariantPlan[] = [];
  for (const variant of configInstance.spec.models) {
    const entry = resolved.find((r) => r.model === variant.model);
    const instance = entry?.instance ?? (entry ? versionedName(entry.model, entry.version) : undefined);
    const snapshot = instance ? modelInstances.get(instance) : undefined;
    if (!entry || !instance || !snapshot) return undefined;
    const fetcherImage = snapshot.metadata.annotations?.[fetcherImageAnnotation];
    const fetcherFlags = fetcherImage && snapshot.metadata.annotations?.[fetcherFlagsAnnotation] === 'none' ? { fetcherFlags: false } : {};
    const podDefaults = parsePodDefaults(snapshot.metadata.annotations?.[podDefaultsAnnotation]);
    variants.push({ variant, model: snapshot.spec, version: entry.version, instance, ...(fetcherImage ? { fetcherImage } : {}), ...fetcherFlags, ...(podDefaults ? { podDefaults } : {}) });
  }
  return { config: template, spec: configInstance.spec, version, instance: meta.name!, variants };
}

/** Reads the pinned defaults an annotation records; undefined when absent or unreadable. */
export function parsePodDefaults(text: string | undefined): PodDefaults | undefined {
  if (!text) return undefined;
  try {
    const d = JSON.parse(text) as Partial<PodDefaults>;
    return { spread: d.spread === true, gpuTolerations: Array.isArray(d.gpuTolerations) ? d.gpuTolerations : [], imagePullSecrets: Array.isArray(d.imagePullSecrets) ? d.imagePullSecrets.filter((n) => typeof n === 'string') : [] };
  } catch {
    return undefined;
  }
}
