// Every object the controller wants for an endpoint, computed from the endpoint, the version plans
// and the operator config. Pure: the runtime decides whether and how to write them. The snapshots
// (snapshots.ts), the storage (storage.ts) and the parts of the pod (pod-spec.ts) have files of their own; this one holds
// the pod and the objects that serve it.
import { resources } from '../kube/resources.ts';
import { labels, replicasOwnerAnnotation } from './labels.ts';
import { quantityValue } from './compare.ts';
import type { VariantPlan } from './plan.ts';
import { autoscaler } from './autoscaling.ts';
import { namespaced, type Desired, type EndpointContext } from './common.ts';
import { servicePort } from './ports.ts';
import { agentContainer, agentVolumes, modelPortName } from './agent.ts';
import {
  artifactSourceRoot,
  fetcherContainerName,
  fetcherEntrypoint,
  fetcherUser,
  modelMountPath,
  preStopSleepSeconds,
  restrictedContainer,
  serverContainerName,
  workloadLabels,
} from './containers.ts';
import { podDefaultsRecord } from './snapshots.ts';
import {
  defaultGpuResource,
  podPlacement,
  podSecurityContext,
  podSelector,
  probe,
  quantityResources,
  serverSecurityContext,
} from './pod-spec.ts';
import { hostRootMountPath, hostSubPath, storage } from './storage.ts';

export { commonLabels, gatewayName, hostOf, namespaced, urlOf, type Desired, type EndpointContext } from './common.ts';
export { servicePort };
export { defaultGpuResource };
export {
  artifactSourceRoot,
  fetcherContainerName,
  fetcherEntrypoint,
  fetcherUser,
  modelMountPath,
  preStopSleepSeconds,
  serverContainerName,
} from './containers.ts';
export { configInstance, configInstanceStatus, currentPodDefaults, modelInstance, podDefaultsOf } from './snapshots.ts';
export {
  cleanupPod,
  cleanupPodName,
  hostNodesAnnotation,
  hostNodesOf,
  hostRootMountPath,
  hostSubPath,
  hostSubPathAnnotation,
  persistentVolumeName,
  storage,
} from './storage.ts';

/** Where the fetcher finds the projected ServiceAccount token of spec.artifactIdentity, and its default audience (IRSA's). */
export const awsIdentityMountPath = '/var/run/secrets/ml-operator/aws';
const awsIdentityVolume = 'aws-identity-token';
export const defaultAwsIdentityAudience = 'sts.amazonaws.com';

/** Mount point and volume of a model's memory-backed shared memory. */
export const shmMountPath = '/dev/shm';
const shmVolume = 'dshm';

function deploymentAnnotations(
  autoscaled: boolean,
  defaults: Record<string, string>,
): Record<string, string> | undefined {
  const a = { ...(autoscaled ? { [replicasOwnerAnnotation]: 'autoscaler' } : {}), ...defaults };
  return Object.keys(a).length ? a : undefined;
}

/** The Deployment of a variant; `replicas` when the rollout wants another count than the variant's `instances`. */
export function deployment(
  ctx: EndpointContext,
  v: VariantPlan,
  progressDeadlineSeconds: number,
  replicas = v.variant.instances ?? 1,
): Desired {
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
    volumes.push(
      config.storage.mode === 'emptyDir'
        ? { name: 'model', emptyDir: { sizeLimit: size } }
        : { name: 'model', persistentVolumeClaim: { claimName: v.instance } },
    );
    volumes.push({ name: 'fetch-tmp', emptyDir: {} });
    // hostPath: the fetcher fills the instance's directory under the volume's root; elsewhere the volume is the model directory.
    const hostPath = config.storage.mode === 'hostPath';
    const fetchInto = hostPath
      ? `${hostRootMountPath}/${hostSubPath(endpoint.metadata.namespace!, v)}`
      : modelMountPath;
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
      volumes.push({
        name: awsIdentityVolume,
        projected: {
          defaultMode: 420,
          sources: [
            {
              serviceAccountToken: {
                audience: identity.audience ?? defaultAwsIdentityAudience,
                expirationSeconds: 3600,
                path: 'token',
              },
            },
          ],
        },
      });
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
        ...(v.fetcherFlags === false
          ? []
          : [
              `--max-bytes=${Math.floor(quantityValue(size) ?? 0)}`,
              ...(model.artifactSha256 ? [`--sha256=${model.artifactSha256.toLowerCase()}`] : []),
            ]),
        artifact,
        fetchInto,
      ],
      ...(model.artifactSecret ? { envFrom: [{ secretRef: { name: model.artifactSecret } }] } : {}),
      ...(identityEnv.length ? { env: identityEnv } : {}),
      resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
      securityContext: {
        ...restrictedContainer,
        runAsUser: fetcherUser,
        runAsGroup: fetcherUser,
        readOnlyRootFilesystem: true,
      },
      volumeMounts: fetcherMounts,
    });
  }
  const serverMounts: unknown[] = artifact
    ? [
        {
          name: 'model',
          mountPath: modelMountPath,
          readOnly: true,
          ...(config.storage.mode === 'hostPath' ? { subPath: hostSubPath(endpoint.metadata.namespace!, v) } : {}),
        },
      ]
    : [];
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
    env: [
      ...(model.env ?? []).map((e) => (e.value === '' ? { name: e.name } : e)),
      { name: 'MODEL_PATH', value: modelMountPath },
      { name: 'PORT', value: String(port) },
    ],
    ports: [{ name: serverPort, containerPort: port, protocol: 'TCP' }],
    readinessProbe: {
      httpGet: { path: model.readinessPath ?? '/', port: serverPort },
      periodSeconds: 5,
      failureThreshold: 3,
    },
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
    ? [
        agentContainer({
          endpoint,
          v,
          image: v.agent.image ?? config.fetcher.image,
          modelPort: port,
          modelReadinessPath: model.readinessPath ?? '/',
          securityContext: {
            ...restrictedContainer,
            runAsUser: fetcherUser,
            runAsGroup: fetcherUser,
            readOnlyRootFilesystem: true,
          },
          preStop,
        }),
      ]
    : [];
  volumes.push(...agentVolumes(endpoint, v));
  const d = namespaced(
    resources.deployment,
    endpoint,
    v.instance,
    podLabels,
    {
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
    },
    deploymentAnnotations(autoscaled, podDefaultsRecord(ctx, v)),
  );
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
export function disruptionBudget(
  ctx: EndpointContext,
  v: VariantPlan,
  replicas = v.variant.instances ?? 1,
): Desired | undefined {
  const most = v.variant.autoscaling ? (replicas === 0 ? 0 : v.variant.autoscaling.maxInstances) : replicas;
  if (most <= 1) return undefined;
  const { endpoint } = ctx;
  return namespaced(resources.podDisruptionBudget, endpoint, v.instance, workloadLabels(endpoint, v), {
    spec: { maxUnavailable: 1, selector: { matchLabels: podSelector(endpoint, v) } },
  });
}

/** Everything that runs one variant: storage, Deployment, Service, its disruption budget and its autoscaler when it has them. */
export function workloads(
  ctx: EndpointContext,
  v: VariantPlan,
  progressDeadlineSeconds: number,
  replicas?: number,
  hostNodes: readonly string[] = [],
): Desired[] {
  const budget = disruptionBudget(ctx, v, replicas);
  return [
    ...storage(ctx, v, hostNodes),
    deployment(ctx, v, progressDeadlineSeconds, replicas),
    service(ctx, v),
    ...(budget ? [budget] : []),
    ...(v.variant.autoscaling ? [autoscaler(ctx, v)] : []),
  ];
}
