// The pod of a variant, part by part: its resources, where it may run and who it runs as, its
// security contexts (restricted, with what the model explicitly loosens) and its probes. Pure; the
// Deployment that holds them is built in objects.ts.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import type { EndpointContext } from './common.ts';
import { fetcherUser, restrictedContainer } from './containers.ts';
import { labels } from './labels.ts';
import type { VariantPlan } from './plan.ts';
import { podDefaultsOf } from './snapshots.ts';

/** GPUs of a variant are of this resource unless it names another. */
export const defaultGpuResource = 'nvidia.com/gpu';

export function quantityResources(v: VariantPlan) {
  const values: Record<string, string> = {};
  if (v.variant.cpus !== undefined) values.cpu = String(v.variant.cpus);
  if (v.variant.memory !== undefined) values.memory = String(v.variant.memory);
  if (v.variant.gpus) values[v.variant.gpuResource ?? defaultGpuResource] = String(v.variant.gpus);
  return Object.keys(values).length ? { requests: values, limits: values } : {};
}

/** The selector of a variant's pods: its Deployment's, its spread constraints' and its disruption budget's. */
export function podSelector(endpoint: MachineLearningEndpoint, v: VariantPlan): Record<string, string> {
  return { [labels.endpoint]: endpoint.metadata.name!, [labels.modelInstance]: v.instance };
}

const only = <T extends object>(o: T): Partial<T> =>
  Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as Partial<T>;

/**
 * Where a variant's pods may run, and who they are: the variant's placement (or the operator's GPU
 * tolerations and spread over nodes), the model's identity and pull secrets. Fields are left out
 * when there is nothing to say, so that a model without them keeps the pod template it always had.
 */
export function podPlacement(ctx: EndpointContext, v: VariantPlan): Record<string, unknown> {
  const { variant, model } = v;
  const defaults = podDefaultsOf(ctx, v);
  // An empty value is stored as no value: written so, it matches what the API server keeps.
  const tolerations = (variant.tolerations ?? (variant.gpus ? defaults.gpuTolerations : [])).map(({ value, ...t }) =>
    value ? { ...t, value } : t,
  );
  const spread =
    variant.topologySpreadConstraints?.map((c) => ({
      maxSkew: c.maxSkew ?? 1,
      topologyKey: c.topologyKey,
      whenUnsatisfiable: c.whenUnsatisfiable ?? 'ScheduleAnyway',
      labelSelector: { matchLabels: podSelector(ctx.endpoint, v) },
    })) ??
    (defaults.spread
      ? [
          {
            maxSkew: 1,
            topologyKey: 'kubernetes.io/hostname',
            whenUnsatisfiable: 'ScheduleAnyway',
            labelSelector: { matchLabels: podSelector(ctx.endpoint, v) },
          },
        ]
      : []);
  const pullSecrets = [...new Set([...defaults.imagePullSecrets, ...(model.imagePullSecrets ?? [])])];
  return {
    ...(model.serviceAccountName ? { serviceAccountName: model.serviceAccountName } : {}),
    ...(pullSecrets.length ? { imagePullSecrets: pullSecrets.map((name) => ({ name })) } : {}),
    ...(model.terminationGracePeriodSeconds !== undefined
      ? { terminationGracePeriodSeconds: model.terminationGracePeriodSeconds }
      : {}),
    ...(variant.priorityClassName ? { priorityClassName: variant.priorityClassName } : {}),
    ...(variant.nodeSelector && Object.keys(variant.nodeSelector).length ? { nodeSelector: variant.nodeSelector } : {}),
    ...(variant.affinity && Object.keys(variant.affinity).length ? { affinity: variant.affinity } : {}),
    ...(tolerations.length ? { tolerations } : {}),
    ...(spread.length ? { topologySpreadConstraints: spread } : {}),
  };
}

/** The pod's security context: restricted, with what the model explicitly loosens. */
export function podSecurityContext(v: VariantPlan): Record<string, unknown> {
  const p = v.model.securityContext?.pod ?? {};
  return {
    runAsNonRoot: true,
    fsGroup: fetcherUser,
    seccompProfile: { type: 'RuntimeDefault' },
    ...only({
      runAsUser: p.runAsUser,
      runAsGroup: p.runAsGroup,
      runAsNonRoot: p.runAsNonRoot,
      fsGroup: p.fsGroup,
      supplementalGroups: p.supplementalGroups?.length ? p.supplementalGroups : undefined,
    }),
  };
}

/** The server container's security context: restricted, with what the model explicitly loosens. */
export function serverSecurityContext(v: VariantPlan): Record<string, unknown> {
  const sc = v.model.securityContext;
  if (!sc) return restrictedContainer;
  const c = sc.container ?? {};
  const runAsNonRoot = c.runAsNonRoot ?? sc.pod?.runAsNonRoot ?? true;
  return {
    ...restrictedContainer,
    runAsNonRoot,
    ...only({
      runAsUser: c.runAsUser,
      runAsGroup: c.runAsGroup,
      allowPrivilegeEscalation: c.allowPrivilegeEscalation,
      readOnlyRootFilesystem: c.readOnlyRootFilesystem,
    }),
    // Empty lists are stored as none: they are written so, or the Deployment would be rewritten on every reconcile.
    ...(c.capabilities
      ? {
          capabilities: {
            ...(c.capabilities.add?.length ? { add: c.capabilities.add } : {}),
            ...((c.capabilities.drop ?? ['ALL']).length ? { drop: c.capabilities.drop ?? ['ALL'] } : {}),
          },
        }
      : {}),
  };
}

type ModelProbe = NonNullable<VariantPlan['model']['startupProbe']>;
// An initial delay of 0 is stored as none: written so, it matches what the API server keeps.
export const probe = (p: ModelProbe, port: string) => ({
  httpGet: { path: p.path, port },
  ...only({
    initialDelaySeconds: p.initialDelaySeconds || undefined,
    periodSeconds: p.periodSeconds,
    timeoutSeconds: p.timeoutSeconds,
    failureThreshold: p.failureThreshold,
  }),
});
