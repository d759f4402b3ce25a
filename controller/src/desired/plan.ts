// Which version an endpoint should serve: the config and model versions that a config and its
// models resolve to, or that a snapshot (instance) recorded. Pure: no I/O.
import type { MachineLearningEndpointConfig, MachineLearningEndpointConfigSpec, MachineLearningEndpointConfigVariant, MachineLearningModel, MachineLearningModelSpec } from '../api/generated.ts';
import { fetcherFlagsAnnotation, fetcherImageAnnotation, labels } from './labels.ts';
import { contentVersion, versionedName } from './names.ts';

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

/** What a variant's version depends on besides the model: its resources, never weight or instances. */
function variantResources(v: MachineLearningEndpointConfigVariant) {
  return { cpus: v.cpus, memory: v.memory, gpus: v.gpus, size: v.size, path: v.path };
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
    variants.push({ variant, model: snapshot.spec, version: entry.version, instance, ...(fetcherImage ? { fetcherImage } : {}), ...fetcherFlags });
  }
  return { config: template, spec: configInstance.spec, version, instance: meta.name!, variants };
}
