// The API resources the controller reads and writes, as the raw HTTP API names them.
import {
  MachineLearningEndpointConfigResource,
  MachineLearningEndpointResource,
  MachineLearningModelResource,
} from '../api/generated.ts';

export interface Resource {
  /** API group; '' for the core group. */
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

export const apiVersionOf = (r: Resource): string => (r.group ? `${r.group}/${r.version}` : r.version);

const crd = (r: { group: string; version: string; kind: string; plural: string }): Resource => ({
  ...r,
  namespaced: true,
});

export const resources = {
  endpoint: crd(MachineLearningEndpointResource),
  endpointConfig: crd(MachineLearningEndpointConfigResource),
  model: crd(MachineLearningModelResource),
  deployment: { group: 'apps', version: 'v1', kind: 'Deployment', plural: 'deployments', namespaced: true },
  service: { group: '', version: 'v1', kind: 'Service', plural: 'services', namespaced: true },
  persistentVolumeClaim: {
    group: '',
    version: 'v1',
    kind: 'PersistentVolumeClaim',
    plural: 'persistentvolumeclaims',
    namespaced: true,
  },
  persistentVolume: {
    group: '',
    version: 'v1',
    kind: 'PersistentVolume',
    plural: 'persistentvolumes',
    namespaced: false,
  },
  gateway: { group: 'networking.istio.io', version: 'v1', kind: 'Gateway', plural: 'gateways', namespaced: true },
  virtualService: {
    group: 'networking.istio.io',
    version: 'v1',
    kind: 'VirtualService',
    plural: 'virtualservices',
    namespaced: true,
  },
  pod: { group: '', version: 'v1', kind: 'Pod', plural: 'pods', namespaced: true },
  configMap: { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true },
  podDisruptionBudget: {
    group: 'policy',
    version: 'v1',
    kind: 'PodDisruptionBudget',
    plural: 'poddisruptionbudgets',
    namespaced: true,
  },
  lease: { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases', namespaced: true },
  event: { group: '', version: 'v1', kind: 'Event', plural: 'events', namespaced: true },
  namespace: { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
} as const satisfies Record<string, Resource>;

/** The shape every Kubernetes object shares; `unknown` elsewhere keeps callers honest. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: {
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
      blockOwnerDeletion?: boolean;
    }[];
    finalizers?: string[];
    managedFields?: unknown[];
  };
  spec?: unknown;
  status?: unknown;
}
