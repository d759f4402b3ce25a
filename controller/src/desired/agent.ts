// The model agent: a proxy from the controller image in front of the model server, in the model pod
// (docs/agent.md). The pod's port named http is the agent's, so the Service reaches the model through
// it; the server's port is renamed `model`. What the agent does with what it sees (Data Capture) comes
// from a ConfigMap per endpoint that it re-reads, so that changing it restarts no pod; only what the
// pod itself needs (the agent, its credentials, a claim to write to) is part of the model version.
import type { AnalysisCheck, DataCaptureConfig, MachineLearningEndpoint } from '../api/generated.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import { commonLabels, namespaced, type Desired } from './common.ts';
import { contentVersion } from './names.ts';
import { servicePort } from './ports.ts';
import { destinationClaim, isShadow, shadowMirror, type VariantPlan, type VersionPlan } from './plan.ts';
import type { RouteMirror } from './route.ts';

export const agentContainerName = 'agent';
/**
 * Node's flags for the agent: V8's young generation in semi-spaces of 1 MiB instead of its default,
 * which grows to tens of MiB under load. Measured by \`npm run bench:agent\` (500 requests/s, then
 * saturation): peak RSS 107 -> 82 MiB, the same throughput; the container's limit is 128 MiB.
 */
export const agentNodeFlags = ['--max-semi-space-size=1'];
export const agentEntrypoint = ['node', ...agentNodeFlags, '/app/dist/agent/main.js'];
/** The server's port, renamed when an agent takes the name http. */
export const modelPortName = 'model';
export const agentAdminPortName = 'agent-admin';
export const agentReadyPath = '/-/agent/ready';
export const agentStatusPath = '/-/agent/status';
export const agentMetricsPath = '/-/agent/metrics';
export const agentConfigMountPath = '/etc/ml-operator/agent';
export const agentConfigFile = 'config.json';
/** Where the claim of a pvc:// destination is mounted in the agent: `<root>/<claim>`. */
export const captureMountRoot = '/var/run/ml-operator/capture';
const agentConfigVolume = 'agent-config';
const captureVolume = 'capture';

/** Defaults of the fields a dataCapture block may leave out. */
export const captureDefaults = {
  samplingPercent: 100,
  captureOptions: ['Input', 'Output'],
  textContentTypes: ['application/json', 'text/csv'],
  maxRecordBytes: 1_048_576,
  rotation: { maxBytes: 16_777_216, maxSeconds: 60 },
} as const;

/** The agent's data and admin ports: the usual ones, unless the model server already listens there. */
export function agentPorts(modelPort: number): { data: number; admin: number } {
  return { data: modelPort === 8080 ? 18080 : 8080, admin: modelPort === 9090 ? 19090 : 9090 };
}

export const captureConfigMapName = (endpoint: string) => `${endpoint}-data-capture`;

/** Where the agent writes: object stores as the user wrote them, a claim as the directory it is mounted at. */
export function agentDestination(destination: string): string {
  const claim = destinationClaim(destination);
  if (!claim) return destination;
  const path = destination.slice(`pvc://${claim}`.length).replace(/^\/+/, '');
  return `file://${captureMountRoot}/${claim}${path ? `/${path}` : ''}`;
}

/** A shadow in the agent's config.json: where its copies go, how its answers are compared, and who mirrors. */
export interface AgentShadow {
  name: string;
  url: string;
  percent: number;
  compare: { path: string; kind: 'labels' | 'numbers'; absoluteTolerance: number; relativeTolerance: number };
  /** The model versions whose agents mirror to it: the serving version's variants that take traffic. */
  sources: string[];
  /** `copy`: the target is the serving version, whose answer is the reference (an agreement check). */
  reference?: 'copy';
}

/** A compare block (a shadow's or an agreement check's) with every default filled in, as config.json lists it. */
function compareWithDefaults(c: AgentShadowCompareSpec = {}): AgentShadow['compare'] {
  return {
    path: c.path ?? '$',
    kind: c.kind ?? 'labels',
    absoluteTolerance: c.absoluteTolerance ?? 0,
    relativeTolerance: c.relativeTolerance ?? 0,
  };
}
type AgentShadowCompareSpec = Partial<AgentShadow['compare']>;

/**
 * How the agents' config names the serving instance a new version is compared with, per rollout
 * attempt (its plan's fingerprint): a new attempt, or new steps, start from no tally.
 */
export const rolloutComparisonPrefix = (check: string, plan: string) => `rollout:${check}:${plan.slice(0, 8)}:`;

/**
 * The new version's model instances an agreement check compares: serving ones with an agent that the
 * serving version does not serve from (one it runs as a shadow, a promotion's, is compared).
 */
export function comparedInstances(target: VersionPlan, serving: VersionPlan): VariantPlan[] {
  return target.variants.filter(
    (v) => !isShadow(v) && v.agent && !serving.variants.some((s) => !isShadow(s) && s.instance === v.instance),
  );
}

/**
 * Under an `agreement` check, while a new version rolls out (its attempt recorded, not ended): each
 * of its new model instances' agents send a copy of every request they answer to the serving variant
 * of the same model (else the serving version's heaviest), and compare the answers, the serving one
 * the reference. The serving version takes at most the new version's share on top of its own, never
 * more than all the traffic (the API allows one agreement check).
 */
export function rolloutComparisons(
  namespace: string,
  target: VersionPlan | undefined,
  serving: VersionPlan | undefined,
  checks: readonly AnalysisCheck[],
  rollout: { version?: string; plan?: string; phase?: string } | undefined,
): AgentShadow[] {
  if (!target || !serving || target.version === serving.version) return [];
  if (rollout?.version !== target.version || !rollout.plan) return [];
  if (rollout.phase !== 'Progressing' && rollout.phase !== 'Paused') return [];
  const servingVariants = serving.variants.filter((v) => !isShadow(v));
  const heaviest = servingVariants.reduce<VariantPlan | undefined>(
    (best, v) => (!best || (v.variant.weight ?? 1) > (best.variant.weight ?? 1) ? v : best),
    undefined,
  );
  const pairs = new Map<string, string[]>();
  for (const v of comparedInstances(target, serving)) {
    const reference = servingVariants.find((s) => s.variant.model === v.variant.model) ?? heaviest;
    if (reference) pairs.set(reference.instance, [...(pairs.get(reference.instance) ?? []), v.version]);
  }
  const plan = rollout.plan;
  return checks
    .filter((c) => c.builtin === 'agreement')
    .flatMap((check) =>
      [...pairs].map(([instance, sources]) => {
        return {
          name: `${rolloutComparisonPrefix(check.name, plan)}${instance}`,
          url: `http://${instance}.${namespace}.svc:${servicePort}`,
          percent: 100,
          compare: compareWithDefaults(check.compare),
          sources,
          reference: 'copy' as const,
        };
      }),
    );
}

/**
 * The serving version's shadows its agents mirror to, as config.json lists them: with their share
 * once they can take copies (decision.agentMirrors), with 0 until then, so that an agent keeps a
 * shadow's figures while it is briefly not ready.
 */
export function agentShadows(
  namespace: string,
  serving: VersionPlan | undefined,
  mirrors: readonly RouteMirror[],
): AgentShadow[] {
  if (!serving) return [];
  const sources = serving.variants.filter((v) => !isShadow(v)).map((v) => v.version);
  return serving.variants
    .filter((v) => isShadow(v) && shadowMirror(v.variant.shadow!) === 'Agent')
    .map((v) => {
      return {
        name: v.variant.model,
        url: `http://${v.instance}.${namespace}.svc:${servicePort}`,
        percent: mirrors.find((m) => m.service === v.instance)?.percent ?? 0,
        compare: compareWithDefaults(v.variant.shadow!.compare),
        sources,
      };
    });
}

/**
 * The agent's config.json: the capture settings with every default filled in (off when there are
 * none), and the shadows the serving variants' agents mirror to.
 */
export function agentConfig(
  capture: DataCaptureConfig | undefined,
  shadows: readonly AgentShadow[] = [],
  copyToken?: string,
): { capture: Record<string, unknown>; shadows?: AgentShadow[]; copyToken?: string } {
  const listed = { ...(shadows.length ? { shadows: [...shadows] } : {}), ...(copyToken ? { copyToken } : {}) };
  if (!capture)
    return {
      ...listed,
      capture: {
        enabled: false,
        samplingPercent: 0,
        captureOptions: [...captureDefaults.captureOptions],
        destination: '',
        textContentTypes: [...captureDefaults.textContentTypes],
        maxRecordBytes: captureDefaults.maxRecordBytes,
        rotation: { ...captureDefaults.rotation },
      },
    };
  return {
    ...listed,
    capture: {
      enabled: capture.enabled ?? true,
      samplingPercent: capture.samplingPercent ?? captureDefaults.samplingPercent,
      captureOptions: capture.captureOptions ?? [...captureDefaults.captureOptions],
      destination: agentDestination(capture.destination),
      textContentTypes: capture.textContentTypes ?? [...captureDefaults.textContentTypes],
      maxRecordBytes: capture.maxRecordBytes ?? captureDefaults.maxRecordBytes,
      rotation: {
        maxBytes: capture.rotation?.maxBytes ?? captureDefaults.rotation.maxBytes,
        maxSeconds: capture.rotation?.maxSeconds ?? captureDefaults.rotation.maxSeconds,
      },
    },
  };
}

/**
 * What the endpoint's agents put in the copies they send each other, so that a client's request that
 * carries the copy header is not taken for a copy: derived from the endpoint's uid, which its clients
 * do not see, and the same for every agent of the endpoint.
 */
export const copyTokenOf = (endpoint: MachineLearningEndpoint): string =>
  contentVersion({ copies: endpoint.metadata.uid ?? endpoint.metadata.name });

/** The ConfigMap the endpoint's agents read their capture settings from. */
export function captureConfigMap(
  endpoint: MachineLearningEndpoint,
  capture: DataCaptureConfig | undefined,
  shadows: readonly AgentShadow[] = [],
): Desired {
  const name = captureConfigMapName(endpoint.metadata.name!);
  return namespaced(
    resources.configMap,
    endpoint,
    name,
    commonLabels(endpoint, 'data-capture', endpoint.metadata.name!),
    {
      data: {
        [agentConfigFile]: `${JSON.stringify(agentConfig(capture, shadows, copyTokenOf(endpoint)), null, 2)}\n`,
      },
    } as Partial<KubeObject>,
  );
}

/** The pod volumes the agent needs: its settings (optional, so a pod never waits for them) and the claim it writes to. */
export function agentVolumes(endpoint: MachineLearningEndpoint, v: VariantPlan): unknown[] {
  if (!v.agent) return [];
  // Written as the API server stores it (defaultMode), so that it compares equal.
  return [
    {
      name: agentConfigVolume,
      configMap: { name: captureConfigMapName(endpoint.metadata.name!), optional: true, defaultMode: 420 },
    },
    ...(v.agent.claim ? [{ name: captureVolume, persistentVolumeClaim: { claimName: v.agent.claim } }] : []),
  ];
}

const fieldEnv = (name: string, fieldPath: string) => ({
  name,
  valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } },
});

export interface AgentContainerInput {
  endpoint: MachineLearningEndpoint;
  v: VariantPlan;
  image: string;
  modelPort: number;
  modelReadinessPath: string;
  securityContext: Record<string, unknown>;
  preStop?: Record<string, unknown>;
}

/** The agent container of a variant's pods. */
export function agentContainer({
  endpoint,
  v,
  image,
  modelPort,
  modelReadinessPath,
  securityContext,
  preStop,
}: AgentContainerInput): Record<string, unknown> {
  const ports = agentPorts(modelPort);
  const claim = v.agent?.claim;
  return {
    name: agentContainerName,
    image,
    command: agentEntrypoint,
    args: [
      `--listen=0.0.0.0:${ports.data}`,
      `--admin-listen=0.0.0.0:${ports.admin}`,
      `--model=http://127.0.0.1:${modelPort}`,
      `--model-ready-path=${modelReadinessPath}`,
      `--config=${agentConfigMountPath}/${agentConfigFile}`,
    ],
    env: [
      fieldEnv('ML_NAMESPACE', 'metadata.namespace'),
      { name: 'ML_ENDPOINT', value: endpoint.metadata.name! },
      { name: 'ML_VARIANT', value: v.variant.model },
      { name: 'ML_MODEL_VERSION', value: v.version },
      fieldEnv('ML_POD_NAME', 'metadata.name'),
    ],
    ...(v.agent?.credentialsSecret ? { envFrom: [{ secretRef: { name: v.agent.credentialsSecret } }] } : {}),
    ports: [
      { name: 'http', containerPort: ports.data, protocol: 'TCP' },
      { name: agentAdminPortName, containerPort: ports.admin, protocol: 'TCP' },
    ],
    // Ready only while the model is: the agent's own readiness asks the model.
    readinessProbe: {
      httpGet: { path: agentReadyPath, port: agentAdminPortName },
      periodSeconds: 5,
      failureThreshold: 3,
    },
    ...(preStop ? { lifecycle: preStop } : {}),
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '128Mi' } },
    securityContext,
    volumeMounts: [
      { name: agentConfigVolume, mountPath: agentConfigMountPath, readOnly: true },
      ...(claim ? [{ name: captureVolume, mountPath: `${captureMountRoot}/${claim}` }] : []),
    ],
  };
}
