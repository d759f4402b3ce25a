// Label and annotation keys the controller puts on what it creates. "Instance" means three things
// around here, kept apart by name: a snapshot (`snapshot`: a config or model object the controller
// made, versioned, as opposed to the user's template), a model instance (`modelInstance`: one model
// version of one endpoint, with its Deployment, Service and storage), and the application instance
// of Kubernetes' recommended labels (`appInstance`: the endpoint an object belongs to).
export const labels = {
  managedBy: 'app.kubernetes.io/managed-by',
  partOf: 'app.kubernetes.io/part-of',
  name: 'app.kubernetes.io/name',
  appInstance: 'app.kubernetes.io/instance',
  component: 'app.kubernetes.io/component',
  version: 'ml-operator.dev/version',
  /** Name of the endpoint an object belongs to. */
  endpoint: 'ml-operator.dev/endpoint',
  /** Namespace of that endpoint (on cluster-scoped objects). */
  endpointNamespace: 'ml-operator.dev/endpoint-namespace',
  /** Marks a config or model object as a snapshot made by the controller, not a user's template. */
  snapshot: 'ml-operator.dev/snapshot',
  /** Template a snapshot was taken from. */
  template: 'ml-operator.dev/template',
  /** Model instance a Deployment, Service or volume serves. */
  modelInstance: 'ml-operator.dev/model-instance',
  /** On a config snapshot of a version a shadow test promoted: the mark of the test it passed (rollout/shadow-tests.ts). */
  promoted: 'ml-operator.dev/promoted',
} as const;

/** The key snapshots had before 0.2: still recognised, so that an upgrade never takes a snapshot for a template. */
const legacySnapshotLabel = 'ml-operator.dev/instance';

/** A config or model object the controller made (a snapshot), not a user's template. */
export function isSnapshot(o: { metadata: { labels?: Record<string, string> } } | undefined): boolean {
  const l = o?.metadata.labels;
  return l?.[labels.snapshot] === 'true' || l?.[legacySnapshotLabel] === 'true';
}

export const managerName = 'ml-operator';
export const managedBySelector = `${labels.managedBy}=${managerName}`;

/** On a Deployment whose replicas an autoscaler owns: `autoscaler` (the controller no longer writes them). */
export const replicasOwnerAnnotation = 'ml-operator.dev/replicas';

/** Hash of the body the controller last applied: a differing hash means the object must be written. */
export const desiredHashAnnotation = 'ml-operator.dev/desired-hash';

/**
 * On a model snapshot: the artifact fetcher image its Deployment runs. A version keeps the fetcher
 * it started with, so that a controller upgrade (which brings a new fetcher image) restarts no pod.
 */
export const fetcherImageAnnotation = 'ml-operator.dev/fetcher-image';

/**
 * On a model snapshot: `none` when its pinned fetcher takes no flags, only `URI TARGET` (the fetcher
 * of 0.1.0, which stops with a usage error on anything else). Absent: the fetcher takes this
 * release's flags (`--max-bytes`, `--sha256`).
 */
export const fetcherFlagsAnnotation = 'ml-operator.dev/fetcher-flags';

/**
 * On a model snapshot and its Deployment: the operator defaults (chart GPU tolerations, pull
 * secrets, default spread over nodes) the instance's pods run with, as JSON. A Deployment without it
 * was made by a release before these defaults: it keeps running without them.
 */
export const podDefaultsAnnotation = 'ml-operator.dev/pod-defaults';

/**
 * On a model snapshot: its model agent, as JSON (image, credentialsSecret, claim), when the instance
 * has one. A version keeps its agent (and the agent's image) for its life, as it keeps its fetcher.
 */
export const agentAnnotation = 'ml-operator.dev/agent';

/** Finalizer that removes cluster-scoped PersistentVolumes (hostPath storage), which owner references cannot reach. */
export const storageFinalizer = 'ml-operator.dev/storage';

/**
 * Finalizer that takes a deleted endpoint's route away first and keeps its model pods serving for its
 * drainSeconds, before the garbage collector removes the rest (reconcile/deletion.ts).
 */
export const drainFinalizer = 'ml-operator.dev/drain';
