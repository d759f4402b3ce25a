// Which version an endpoint should serve: the config and model versions that a config and its
// models resolve to, or that a snapshot (instance) recorded. Pure: no I/O.
import type {
  MachineLearningEndpointRollout,
  MachineLearningEndpointConfig,
  MachineLearningEndpointConfigSpec,
  MachineLearningEndpointConfigVariant,
  MachineLearningModel,
  MachineLearningModelSpec,
} from '../api/generated.ts';
import {
  agentAnnotation,
  fetcherFlagsAnnotation,
  fetcherImageAnnotation,
  labels,
  podDefaultsAnnotation,
} from './labels.ts';
import { contentVersion, versionedName } from './names.ts';
import type { Toleration } from '../options/config.ts';

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
  /** The model agent in front of the server, when the version has one. */
  agent?: AgentPlan;
}

/**
 * The model agent of an instance (see desired/agent.ts): what of it is fixed for the instance's life.
 * Part of the model version, so that adding it, removing it or changing what its pods mount rolls
 * out a new version; what it does (sampling, destination) comes from a ConfigMap and changes in place.
 */
export interface AgentPlan {
  /** The image it runs, once pinned (as the fetcher's, see pinFetcher); absent: the operator's current one. */
  image?: string;
  /** Secret whose keys the agent gets as environment variables (object-store credentials, endpoint overrides). */
  credentialsSecret?: string;
  /** PersistentVolumeClaim the records are written to (a pvc:// destination), mounted in the pod. */
  claim?: string;
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
  /** A version a passed shadow test promoted: the mark of that test (labels.promoted on its config snapshot). */
  promoted?: string;
}

/** A shadow variant: it receives a mirror of the traffic, never a share of it. */
export const isShadow = (v: VariantPlan): boolean => v.variant.shadow !== undefined;

/** Who sends a shadow's copies: its serving variants' agents (and compare the answers), or the route. */
export const shadowMirror = (
  shadow: NonNullable<MachineLearningEndpointConfigVariant['shadow']>,
): 'Agent' | 'Gateway' => shadow.mirror ?? (shadow.compare || shadow.test ? 'Agent' : 'Gateway');

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

/** What of the agent the version depends on: left out when there is none, so that versions without it keep theirs. */
const agentIdentity = (agent: AgentPlan | undefined) =>
  agent ? { agent: { credentialsSecret: agent.credentialsSecret, claim: agent.claim } } : {};

export function modelVersion(
  endpoint: string,
  model: MachineLearningModelSpec,
  variant: MachineLearningEndpointConfigVariant,
  agent?: AgentPlan,
): string {
  return contentVersion({ endpoint, model, resources: variantResources(variant), ...agentIdentity(agent) });
}

/** The claim of a `pvc://<claim>/<path>` destination. */
export const destinationClaim = (destination: string): string | undefined => destination.match(/^pvc:\/\/([^/]+)/)?.[1];

/**
 * The agent a version made from this config gets: one while it has a dataCapture block (enabled or
 * not), or a shadow its agents mirror to, or when the endpoint's rollout asks each new version's
 * agents for a measure (an `agreement` check, or an errorRate or latencyP99 from the agents).
 */
export function agentOf(config: MachineLearningEndpointConfigSpec, compared = false): AgentPlan | undefined {
  const capture = config.dataCapture;
  if (!capture)
    return compared || config.models.some((v) => v.shadow && shadowMirror(v.shadow) === 'Agent') ? {} : undefined;
  const claim = destinationClaim(capture.destination);
  return {
    ...(capture.credentialsSecret ? { credentialsSecret: capture.credentialsSecret } : {}),
    ...(claim ? { claim } : {}),
  };
}

export type Resolution = { ok: true; plan: VersionPlan } | { ok: false; reason: 'ModelNotFound'; missing: string[] };

/**
 * Whether the endpoint's rollout asks a new version's model agents for a measure (Canary and Linear
 * steps only): an agreement check (they compare its answers with the serving version's), or a
 * built-in errorRate or latencyP99 whose source is Agents (they count its clients' requests).
 */
export const rolloutAsksAgents = (rollout: MachineLearningEndpointRollout | undefined): boolean =>
  (rollout?.strategy === 'Canary' || rollout?.strategy === 'Linear') &&
  (rollout.analysis?.checks ?? []).some((c) => c.builtin === 'agreement' || c.source === 'Agents');

/**
 * Resolves a config template and the model templates it names into the version to serve; `compared`:
 * the endpoint's rollout asks the new version's agents for a measure (rolloutAsksAgents), so its variants get an agent.
 */
export function planFromTemplates(
  endpoint: string,
  configName: string,
  config: MachineLearningEndpointConfigSpec,
  models: ReadonlyMap<string, MachineLearningModelSpec>,
  compared = false,
): Resolution {
  const missing = config.models.map((v) => v.model).filter((m) => !models.has(m));
  if (missing.length > 0) return { ok: false, reason: 'ModelNotFound', missing };
  const agent = agentOf(config, compared);
  const variants = config.models.map((variant) => {
    const model = models.get(variant.model)!;
    const version = modelVersion(endpoint, model, variant, agent);
    return { variant, model, version, instance: versionedName(variant.model, version), ...(agent ? { agent } : {}) };
  });
  const version = contentVersion({ endpoint, config, models: variants.map((v) => [v.variant.model, v.version]) });
  return {
    ok: true,
    plan: { config: configName, spec: config, version, instance: versionedName(configName, version), variants },
  };
}

/**
 * Rebuilds the plan of a version from its snapshots, for when a template is gone or another version
 * is rolling out. Undefined when a snapshot is missing: then nothing of that version is touched.
 */
export function planFromSnapshot(
  configInstance: MachineLearningEndpointConfig,
  modelInstances: ReadonlyMap<string, MachineLearningModel>,
): VersionPlan | undefined {
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
    const fetcherFlags =
      fetcherImage && snapshot.metadata.annotations?.[fetcherFlagsAnnotation] === 'none' ? { fetcherFlags: false } : {};
    const podDefaults = parsePodDefaults(snapshot.metadata.annotations?.[podDefaultsAnnotation]);
    const agent = parseAgent(snapshot.metadata.annotations?.[agentAnnotation]);
    variants.push({
      variant,
      model: snapshot.spec,
      version: entry.version,
      instance,
      ...(fetcherImage ? { fetcherImage } : {}),
      ...fetcherFlags,
      ...(podDefaults ? { podDefaults } : {}),
      ...(agent ? { agent } : {}),
    });
  }
  const promoted = meta.labels?.[labels.promoted];
  return {
    config: template,
    spec: configInstance.spec,
    version,
    instance: meta.name!,
    variants,
    ...(promoted ? { promoted } : {}),
  };
}

/** Reads the pinned defaults an annotation records; undefined when absent or unreadable. */
export function parsePodDefaults(text: string | undefined): PodDefaults | undefined {
  if (!text) return undefined;
  try {
    const d = JSON.parse(text) as Partial<PodDefaults>;
    return {
      spread: d.spread === true,
      gpuTolerations: Array.isArray(d.gpuTolerations) ? d.gpuTolerations : [],
      imagePullSecrets: Array.isArray(d.imagePullSecrets)
        ? d.imagePullSecrets.filter((n) => typeof n === 'string')
        : [],
    };
  } catch {
    return undefined;
  }
}

/** Reads the agent a model snapshot records; undefined when it has none (or it is unreadable). */
export function parseAgent(text: string | undefined): AgentPlan | undefined {
  if (!text) return undefined;
  try {
    const a = JSON.parse(text) as Record<string, unknown>;
    const str = (k: string) => (typeof a[k] === 'string' && a[k] ? { [k]: a[k] } : {});
    return { ...str('image'), ...str('credentialsSecret'), ...str('claim') };
  } catch {
    return undefined;
  }
}
