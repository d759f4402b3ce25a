// Where a model instance's files live: its claim, and in hostPath mode the cluster-scoped volume
// over the chart's hostPathRoot and the pod that removes the files from a node when the version goes. Pure.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import { labels } from './labels.ts';
import { contentVersion } from './names.ts';
import type { VariantPlan } from './plan.ts';
import { commonLabels, namespaced, withHash, type Desired, type EndpointContext } from './common.ts';
import { fetcherEntrypoint, fetcherUser, restrictedContainer, workloadLabels } from './containers.ts';

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
        ...(mode === 'hostPath'
          ? { storageClassName: '', volumeName: persistentVolumeName(namespace, v.instance) }
          : {}),
        ...(mode === 'pvc' && config.storage.storageClassName
          ? { storageClassName: config.storage.storageClassName }
          : {}),
      },
    },
    mode === 'hostPath'
      ? {
          [hostSubPathAnnotation]: hostSubPath(namespace, v),
          ...(nodes.length ? { [hostNodesAnnotation]: [...nodes].sort().join(',') } : {}),
        }
      : undefined,
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
export function cleanupPod(
  endpoint: MachineLearningEndpoint,
  claim: KubeObject,
  fetcherImage: string,
  node: string,
): Desired {
  const instance = claim.metadata.name;
  const subPath = claim.metadata.annotations?.[hostSubPathAnnotation] ?? `${endpoint.metadata.namespace}/${instance}`;
  const podLabels = {
    ...commonLabels(endpoint, 'cleanup', claim.metadata.labels?.[labels.name] ?? instance),
    [labels.modelInstance]: instance,
  };
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
          securityContext: {
            ...restrictedContainer,
            runAsUser: fetcherUser,
            runAsGroup: fetcherUser,
            readOnlyRootFilesystem: true,
          },
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

export const cleanupPodName = (instance: string, node: string) =>
  `${instance}-cleanup-${contentVersion(node).slice(0, 6)}`;
