// Every object the controller wants for an endpoint, computed from the endpoint, the version plans
// and the operator config. Pure: the runtime decides whether and how to write them.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import type { OperatorConfig } from '../options.ts';
import { agentAnnotation, fetcherFlagsAnnotation, fetcherImageAnnotation, labels, podDefaultsAnnotation, replicasOwnerAnnotation } from './labels.ts';
import { quantityValue } from './compare.ts';
import { canonicalJson, contentVersion } from './names.ts';
import { legacyPodDefaults, type PodDefaults, type VariantPlan, type VersionPlan } from './plan.ts';
import { autoscaler } from './autoscaling.ts';
import { commonLabels, namespaced, withHash, type Desired, type EndpointContext } from './common.ts';
import { servicePort } from './ports.ts';
import { agentContainer, agentVolumes, modelPortName } from './agent.ts';

export { commonLabels, gatewayName, hostOf, namespaced, urlOf, type Desired, type EndpointContext } from './common.ts';
export { servicePort };

export const modelMountPath = '/opt/ml/model';
export const artifactSourceRoot = '/mnt/artifact-source';
export const fetcherEntrypoint = ['node', '/app/dist/fetcher/main.js'];
export const fetcherContainerName = 'fetch-artifact';
/** The model server's container. */
export const serverContainerName = 'server';
/**
 * How long a model pod being removed keeps serving (its preStop sleep): longer than the Service's
 * endpoints take to drop it and the data plane to reload (Traefik throttles reloads to 2 s; Istio
 * pushes endpoints within about a second).
 */
export const preStopSleepSeconds = 5;
/** Numeric user of the controller image, which the fetcher runs as. */
export const fetcherUser = 65532;

function snapshotLabels(endpoint: MachineLearningEndpoint, template: string, version: string): Record<string, string> {
  return { ...commonLabels(endpoint, 'snapshot', template), [labels.snapshot]: 'true', [labels.template]: template, [labels.version]: version };
}

/** The immutable snapshot of the config a version was built from. */
export function configInstance(ctx: EndpointContext, plan: VersionPlan): Desired {
  return namespaced(resources.endpointConfig, ctx.endpoint, plan.instance, snapshotLabels(ctx.endpoint, plan.config, plan.version), { spec: plan.spec });
}

export function configInstanceStatus(plan: VersionPlan) {
  return { modelVersions: plan.variants.map((v) => ({ model: v.variant.model, version: v.version, instance: v.instance })) };
}

/** The operator defaults a new instance starts with (see PodDefaults). */
export function currentPodDefaults(config: OperatorConfig): PodDefaults {
  return { spread: true, gpuTolerations: config.models.gpuTolerations, imagePullSecrets: config.models.imagePullSecrets };
}

/** The defaults an instance runs with: the ones pinned to it, else the current ones. */
export const podDefaultsOf = (ctx: EndpointContext, v: VariantPlan): PodDefaults => v.podDefaults ?? currentPodDefaults(ctx.config);

/**
 * The annotation that records an instance's defaults, on its snapshot and its Deployment. None for
 * an instance made before them: its objects stay exactly as that release wrote them (a controller of
 * that release, running beside this one during an upgrade, then agrees with every byte), and an
 * absent annotation on a running Deployment reads as no defaults.
 */
function podDefaultsRecord(ctx: EndpointContext, v: VariantPlan): Record<string, string> {
  const d = podDefaultsOf(ctx, v);
  return canonicalJson(d) === canonicalJson(legacyPodDefaults) ? {} : { [podDefaultsAnnotation]: JSON.stringify(d) };
}

/** The immutable snapshot of a model as one variant of a version runs it. */
export function modelInstance(ctx: EndpointContext, v: VariantPlan): Desired {
  const fetcher = v.model.artifact ? { [fetcherImageAnnotation]: v.fetcherImage ?? ctx.config.fetcher.image, ...(v.fetcherFlags === false ? { [fetcherFlagsAnnotation]: 'none' } : {}) } : {};
  const agent: Record<string, string> = v.agent ? { [agentAnnotation]: JSON.stringify({ ...v.agent, image: v.agent.image ?? ctx.config.fetcher.image }) } : {};
  const annotations = { ...fetcher, ...podDefaultsRecord(ctx, v), ...agent };
  return namespaced(resources.model, ctx.endpoint, v.instance, snapshotLabels(ctx.endpoint, v.variant.model, v.version), { spec: v.model }, Object.keys(annotations).length ? annotations : undefined);
}

function workloadLabels(endpoint: MachineLearningEndpoint, v: VariantPlan): Record<string, string> {
  return { ...commonLabels(endpoint, 'model-server', v.variant.model), [labels.modelInstance]: v.instance, [labels.version]: v.version };
}

const restrictedContainer = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  runAsNonRoot: true,
  seccompProfile: { type: 'RuntimeDefault' },
};

/**
 * Name of the cluster-scoped PersistentVolume of a model instance (hostPath mode). Namespaces and
 * instance names are DNS labels, without dots: joined by dots, two different pairs never collide.
 */
export const persistentVolumeName = (namespace: string, instance: string) => `ml-operator.${namespace}.${instance}`;

/**
 * Where a model instance's files live on the node, relative to the chart's hostPathRoot (the volume's
 * root): `[variant.path/]<namespace>/<instance>`, so that a config can never point outside the root.
 */
export function hostSubPath(namespace: string, v: VariantPlan): string {
  return [...(v.variant.path ? [v.variant.path] : []), namespace, v.instance].join('/');
}

/** The claim of a model instance records where its files are, so that its clean-up needs nothing else. */
export const hostSubPathAnnotation = 'ml-operator.dev/host-subpath';
/** ...and the nodes that ran its pods, each of which holds a copy of the files. */
export const hostNodesAnnotation = 'ml-operator.dev/nodes';

/** Mount point of the whole hostPath root in the fetcher and clean-up containers. */
export const hostRootMountPath = '/mnt/models';

/**
 * Storage objects of a variant: a claim (pvc, hostPath) and its volume (hostPath only). A hostPath
 * volume is the chart's hostPathRoot itself (it must exist on the nodes, writable by the fetcher's
 * user 65532): the fetcher creates the instance's directory under it as that user, the server mounts
 * just that directory (subPath), and a clean-up pod removes it when the version goes. Root-owned
 * directories made by the kubelet (hostPath DirectoryOrCreate, subPath) would not be writable
 * under the restricted security context, and hostPath volumes take no fsGroup.
 */
export function storage(ctx: EndpointContext, v: VariantPlan, nodes: readonly string[] = []): Desired[] {
  const { endpoint, config } = ctx;
  const { mode } = config.storage;
  if (mode === 'emptyDir' || !v.model.artifact) return [];
  const size = String(v.variant.size ?? config.storage.defaultSize);
  const namespace = endpoint.metadata.namespace!;
  const claim = namespaced(
    resources.persistentVolumeClaim,
    endpoint,
    v.instance,
    workloadLabels(endpoint, v),
    {
      spec: {
        accessModes: ['ReadWriteOnce'],
        resources: { requests: { storage: size } },
        ...(mode === 'hostPath' ? { storageClassName: '', volumeName: persistentVolumeName(namespace, v.instance) } : {}),
        ...(mode === 'pvc' && config.storage.storageClassName ? { storageClassName: config.storage.storageClassName } : {}),
      },
    },
    mode === 'hostPath' ? { [hostSubPathAnnotation]: hostSubPath(namespace, v), ...(nodes.length ? { [hostNodesAnnotation]: [...nodes].sort().join(',') } : {}) } : undefined,
  );
  if (mode !== 'hostPath') return [claim];

  const volume = withHash(resources.persistentVolume, {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: {
      name: persistentVolumeName(namespace, v.instance),
      labels: { ...workloadLabels(endpoint, v), [labels.endpointNamespace]: namespace },
    },
    spec: {
      capacity: { storage: size },
      accessModes: ['ReadWriteOnce'],
      persistentVolumeReclaimPolicy: 'Retain',
      // No class (the claim's is ''): the API server drops an empty storageClassName from a volume.
      hostPath: { path: config.storage.hostPathRoot, type: 'Directory' },
      claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace, name: v.instance },
    },
  });
  return [volume, claim];
}

/** The pod that removes a hostPath model instance's files from one node, through its claim, before the claim and volume go. */
export function cleanupPod(endpoint: MachineLearningEndpoint, claim: KubeObject, fetcherImage: string, node: string): Desired {
  const instance = claim.metadata.name;
  const subPath = claim.metadata.annotations?.[hostSubPathAnnotation] ?? `${endpoint.metadata.namespace}/${instance}`;
  const podLabels = { ...commonLabels(endpoint, 'cleanup', claim.metadata.labels?.[labels.name] ?? instance), [labels.modelInstance]: instance };
  return namespaced(resources.pod, endpoint, cleanupPodName(instance, node), podLabels, {
    spec: {
      // The files are on that node: the pod runs there, whatever the scheduler would choose.
      nodeName: node,
      restartPolicy: 'OnFailure',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'cleanup',
          image: fetcherImage,
          command: fetcherEntrypoint,
          args: ['--remove', `${hostRootMountPath}/${subPath}`],
          resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } },
          securityContext: { ...restrictedContainer, runAsUser: fetcherUser, runAsGroup: fetcherUser, readOnlyRootFilesystem: true },
          volumeMounts: [{ name: 'models', mountPath: hostRootMountPath }],
        },
      ],
      volumes: [{ name: 'models', persistentVolumeClaim: { claimName: instance } }],
    },
  });
}

/** Nodes that hold a hostPath model instance's files, as its claim records them. */
export function hostNodesOf(claim: KubeObject | undefined): string[] {
  return claim?.metadata.annotations?.[hostNodesAnnotation]?.split(',').filter(Boolean) ?? [];
}

export const cleanupPodName = (instance: string, node: string) => `${instance}-cleanup-${contentVersion(node).slice(0, 6)}`;

/** GPUs of a variant are of this resource unless it names another. */
export const defaultGpuResource = 'nvidia.com/gpu';

function quantityResources(v: VariantPlan) {
  const values: Record<string, string> = {};
  if (v.variant.cpus !== undefined) values.cpu = String(v.variant.cpus);
  if (v.variant.memory !== undefined) values.memory = String(v.variant.memory);
  if (v.variant.gpus) values[v.variant.gpuResource ?? defaultGpuResource] = String(v.variant.gpus);
  return Object.keys(values).length ? { requests: values, limits: values } : {};
}

/** The selector of a variant's pods: its Deployment's, its spread constraints' and its disruption budget's. */
function podSelector(endpoint: MachineLearningEndpoint, v: VariantPlan): Record<string, string> {
  return { [labels.endpoint]: endpoint.metadata.name!, [labels.modelInstance]: v.instance };
}

const only = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as Partial<T>;

/**
 * Where a variant's pods may run, and who they are: the variant's placement (or the operator's GPU
 * tolerations and spread over nodes), the model's identity and pull secrets. Fields are left out
 * when there is nothing to say, so that a model without them keeps the pod template it always had.
 */
function podPlacement(ctx: EndpointContext, v: VariantPlan): Record<string, unknown> {
  const { variant, model } = v;
  const defaults = podDefaultsOf(ctx, v);
  // An empty value is stored as no value: written so, it matches what the API server keeps.
  const tolerations = (variant.tolerations ?? (variant.gpus ? defaults.gpuTolerations : [])).map(({ value, ...t }) => (value ? { ...t, value } : t));
  const spread =
    variant.topologySpreadConstraints?.map((c) => ({ maxSkew: c.maxSkew ?? 1, topologyKey: c.topologyKey, whenUnsatisfiable: c.whenUnsatisfiable ?? 'ScheduleAnyway', labelSelector: { matchLabels: podSelector(ctx.endpoint, v) } })) ??
    (defaults.spread ? [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: podSelector(ctx.endpoint, v) } }] : []);
  const pullSecrets = [...new Set([...defaults.imagePullSecrets, ...(model.imagePullSecrets ?? [])])];
  return {
    ...(model.serviceAccountName ? { serviceAccountName: model.serviceAccountName } : {}),
    ...(pullSecrets.length ? { imagePullSecrets: pullSecrets.map((name) => ({ name })) } : {}),
    ...(model.terminationGracePeriodSeconds !== undefined ? { terminationGracePeriodSeconds: model.terminationGracePeriodSeconds } : {}),
    ...(variant.priorityClassName ? { priorityClassName: variant.priorityClassName } : {}),
    ...(variant.nodeSelector && Object.keys(variant.nodeSelector).length ? { nodeSelector: variant.nodeSelector } : {}),
    ...(variant.affinity && Object.keys(variant.affinity).length ? { affinity: variant.affinity } : {}),
    ...(tolerations.length ? { tolerations } : {}),
    ...(spread.length ? { topologySpreadConstraints: spread } : {}),
  };
}

/** The pod's security context: restricted, with what the model explicitly loosens. */
function podSecurityContext(v: VariantPlan): Record<string, unknown> {
  const p = v.model.securityContext?.pod ?? {};
  return { runAsNonRoot: true, fsGroup: fetcherUser, seccompProfile: { type: 'RuntimeDefault' }, ...only({ runAsUser: p.runAsUser, runAsGroup: p.runAsGroup, runAsNonRoot: p.runAsNonRoot, fsGroup: p.fsGroup, supplementalGroups: p.supplementalGroups?.length ? p.supplementalGroups : undefined }) };
}

/** The server container's security context: restricted, with what the model explicitly loosens. */
function serverSecurityContext(v: VariantPlan): Record<string, unknown> {
  const sc = v.model.securityContext;
  if (!sc) return restrictedContainer;
  const c = sc.container ?? {};
  const runAsNonRoot = c.runAsNonRoot ?? sc.pod?.runAsNonRoot ?? true;
  return {
    ...restrictedContainer,
    runAsNonRoot,
    ...only({ runAsUser: c.runAsUser, runAsGroup: c.runAsGroup, allowPrivilegeEscalation: c.allowPrivilegeEscalation, readOnlyRootFilesystem: c.readOnlyRootFilesystem }),
    // Empty lists are stored as none: they are written so, or the Deployment would be rewritten on every reconcile.
    ...(c.capabilities ? { capabilities: { ...(c.capabilities.add?.length ? { add: c.capabilities.add } : {}), ...((c.capabilities.drop ?? ['ALL']).length ? { drop: c.capabilities.drop ?? ['ALL'] } : {}) } } : {}),
  };
}

type ModelProbe = NonNullable<VariantPlan['model']['startupProbe']>;
// An initial delay of 0 is stored as none: written so, it matches what the API server keeps.
const probe = (p: ModelProbe, port: string) => ({ httpGet: { path: p.path, port }, ...only({ initialDelaySeconds: p.initialDelaySeconds || undefined, periodSeconds: p.periodSeconds, timeoutSeconds: p.timeoutSeconds, failureThreshold: p.failureThreshold }) });

/** Where the fetcher finds the projected ServiceAccount token of spec.artifactIdentity, and its default audience (IRSA's). */
export const awsIdentityMountPath = '/var/run/secrets/ml-operator/aws';
const awsIdentityVolume = 'aws-identity-token';
export const defaultAwsIdentityAudience = 'sts.amazonaws.com';

/** Mount point and volume of a model's memory-backed shared memory. */
export const shmMountPath = '/dev/shm';
const shmVolume = 'dshm';

function deploymentAnnotations(autoscaled: boolean, defaults: Record<string, string>): Record<string, string> | undefined {
  const a = { ...(autoscaled ? { [replicasOwnerAnnotation]: 'autoscaler' } : {}), ...defaults };
  return Object.keys(a).length ? a : undefined;
}

/** The Deployment of a variant; `replicas` when the rollout wants another count than the variant's `instances`. */
export function deployment(ctx: EndpointContext, v: VariantPlan, progressDeadlineSeconds: number, replicas = v.variant.instances ?? 1): Desired {
  const autoscaled = v.variant.autoscaling !== undefined;
  const { endpoint, config } = ctx;
  const model = v.model;
  const podLabels = workloadLabels(endpoint, v);
  const port = model.port ?? 8080;
  const artifact = model.artifact;
  const volumes: unknown[] = [];
  const initContainers: unknown[] = [];
  if (artifact) {
    const size = String(v.variant.size ?? config.storage.defaultSize);
    volumes.push(config.storage.mode === 'emptyDir' ? { name: 'model', emptyDir: { sizeLimit: size } } : { name: 'model', persistentVolumeClaim: { claimName: v.instance } });
    volumes.push({ name: 'fetch-tmp', emptyDir: {} });
    // hostPath: the fetcher fills the instance's directory under the volume's root; elsewhere the volume is the model directory.
    const hostPath = config.storage.mode === 'hostPath';
    const fetchInto = hostPath ? `${hostRootMountPath}/${hostSubPath(endpoint.metadata.namespace!, v)}` : modelMountPath;
    const fetcherMounts: unknown[] = [
      { name: 'model', mountPath: hostPath ? hostRootMountPath : modelMountPath },
      { name: 'fetch-tmp', mountPath: '/tmp' },
    ];
    const source = artifact.match(/^pvc:\/\/([^/]+)\//)?.[1];
    if (source) {
      volumes.push({ name: 'artifact-source', persistentVolumeClaim: { claimName: source, readOnly: true } });
      fetcherMounts.push({ name: 'artifact-source', mountPath: `${artifactSourceRoot}/${source}`, readOnly: true });
    }
    // A web identity for the fetcher alone: the ServiceAccount's token, projected for the role's audience.
    const identity = model.artifactIdentity;
    const identityEnv = identity
      ? [
          { name: 'AWS_ROLE_ARN', value: identity.awsRoleArn },
          { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: `${awsIdentityMountPath}/token` },
        ]
      : [];
    if (identity) {
      // Written as the API server stores it (defaultMode, expirationSeconds), so that it compares equal.
      volumes.push({ name: awsIdentityVolume, projected: { defaultMode: 420, sources: [{ serviceAccountToken: { audience: identity.audience ?? defaultAwsIdentityAudience, expirationSeconds: 3600, path: 'token' } }] } });
      fetcherMounts.push({ name: awsIdentityVolume, mountPath: awsIdentityMountPath, readOnly: true });
    }
    initContainers.push({
      name: fetcherContainerName,
      image: v.fetcherImage ?? config.fetcher.image,
      command: fetcherEntrypoint,
      // Downloads and unpacking are bounded by the volume's size; the digest, when given, is checked.
      // A fetcher pinned from 0.1.0 knows neither flag (its models have no digest): it keeps its own
      // command line, so that its pods stay as they are.
      args: [
        ...(v.fetcherFlags === false ? [] : [`--max-bytes=${Math.floor(quantityValue(size) ?? 0)}`, ...(model.artifactSha256 ? [`--sha256=${model.artifactSha256.toLowerCase()}`] : [])]),
        artifact,
        fetchInto,
      ],
      ...(model.artifactSecret ? { envFrom: [{ secretRef: { name: model.artifactSecret } }] } : {}),
      ...(identityEnv.length ? { env: identityEnv } : {}),
      resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
      securityContext: { ...restrictedContainer, runAsUser: fetcherUser, runAsGroup: fetcherUser, readOnlyRootFilesystem: true },
      volumeMounts: fetcherMounts,
    });
  }
  const serverMounts: unknown[] = artifact ? [{ name: 'model', mountPath: modelMountPath, readOnly: true, ...(config.storage.mode === 'hostPath' ? { subPath: hostSubPath(endpoint.metadata.namespace!, v) } : {}) }] : [];
  if (model.shmSize !== undefined) {
    volumes.push({ name: shmVolume, emptyDir: { medium: 'Memory', sizeLimit: String(model.shmSize) } });
    serverMounts.push({ name: shmVolume, mountPath: shmMountPath });
  }
  // With an agent, the port named http (the Service's target) is the agent's, and the server's is renamed.
  const serverPort = v.agent ? modelPortName : 'http';
  const preStop = v.preStop === false ? undefined : { preStop: { sleep: { seconds: preStopSleepSeconds } } };
  const server = {
    name: serverContainerName,
    image: model.image,
    ...(model.command?.length ? { command: model.command } : {}),
    ...(model.args?.length ? { args: model.args } : {}),
    // An empty value is no value: the API server stores it without one.
    env: [...(model.env ?? []).map((e) => (e.value === '' ? { name: e.name } : e)), { name: 'MODEL_PATH', value: modelMountPath }, { name: 'PORT', value: String(port) }],
    ports: [{ name: serverPort, containerPort: port, protocol: 'TCP' }],
    readinessProbe: { httpGet: { path: model.readinessPath ?? '/', port: serverPort }, periodSeconds: 5, failureThreshold: 3 },
    ...(model.startupProbe ? { startupProbe: probe(model.startupProbe, serverPort) } : {}),
    ...(model.livenessProbe ? { livenessProbe: probe(model.livenessProbe, serverPort) } : {}),
    // A pod taken away (a scale-down, a replaced or drained version) serves on while the Service's
    // endpoints drop it and the gateway reloads, instead of failing the requests still sent to it.
    ...(preStop ? { lifecycle: preStop } : {}),
    resources: quantityResources(v),
    securityContext: serverSecurityContext(v),
    ...(serverMounts.length ? { volumeMounts: serverMounts } : {}),
  };
  const agentContainers = v.agent
    ? [agentContainer({ endpoint, v, image: v.agent.image ?? config.fetcher.image, modelPort: port, modelReadinessPath: model.readinessPath ?? '/', securityContext: { ...restrictedContainer, runAsUser: fetcherUser, runAsGroup: fetcherUser, readOnlyRootFilesystem: true }, preStop })]
    : [];
  volumes.push(...agentVolumes(endpoint, v));
  const d = namespaced(resources.deployment, endpoint, v.instance, podLabels, {
    spec: {
      // An autoscaled variant's replicas are the autoscaler's: the controller leaves the field alone.
      ...(autoscaled ? {} : { replicas }),
      progressDeadlineSeconds,
      revisionHistoryLimit: 2,
      selector: { matchLabels: podSelector(endpoint, v) },
      template: {
        metadata: { labels: podLabels },
        spec: {
          automountServiceAccountToken: model.automountServiceAccountToken ?? false,
          enableServiceLinks: false,
          ...podPlacement(ctx, v),
          // fsGroup makes a fresh volume writable by the fetcher, which runs as a non-root user.
          securityContext: podSecurityContext(v),
          ...(initContainers.length ? { initContainers } : {}),
          containers: [server, ...agentContainers],
          ...(volumes.length ? { volumes } : {}),
        },
      },
    },
  }, deploymentAnnotations(autoscaled, podDefaultsRecord(ctx, v)));
  return autoscaled ? { ...d, initialReplicas: replicas } : d;
}

export function service(ctx: EndpointContext, v: VariantPlan): Desired {
  const { endpoint } = ctx;
  return namespaced(resources.service, endpoint, v.instance, workloadLabels(endpoint, v), {
    spec: {
      type: 'ClusterIP',
      selector: { [labels.endpoint]: endpoint.metadata.name!, [labels.modelInstance]: v.instance },
      ports: [{ name: 'http', port: servicePort, targetPort: 'http', protocol: 'TCP' }],
    },
  });
}

/**
 * A variant that runs more than one replica (or may, autoscaled) gets a PodDisruptionBudget: a node
 * drain evicts its pods one at a time, so that it keeps serving. None for one replica, which a
 * budget could only block.
 */
export function disruptionBudget(ctx: EndpointContext, v: VariantPlan, replicas = v.variant.instances ?? 1): Desired | undefined {
  const most = v.variant.autoscaling ? (replicas === 0 ? 0 : v.variant.autoscaling.maxInstances) : replicas;
  if (most <= 1) return undefined;
  const { endpoint } = ctx;
  return namespaced(resources.podDisruptionBudget, endpoint, v.instance, workloadLabels(endpoint, v), {
    spec: { maxUnavailable: 1, selector: { matchLabels: podSelector(endpoint, v) } },
  });
}

/** Everything that runs one variant: storage, Deployment, Service, its disruption budget and its autoscaler when it has them. */
export function workloads(ctx: EndpointContext, v: VariantPlan, progressDeadlineSeconds: number, replicas?: number, hostNodes: readonly string[] = []): Desired[] {
  const budget = disruptionBudget(ctx, v, replicas);
  return [...storage(ctx, v, hostNodes), deployment(ctx, v, progressDeadlineSeconds, replicas), service(ctx, v), ...(budget ? [budget] : []), ...(v.variant.autoscaling ? [autoscaler(ctx, v)] : [])];
}
