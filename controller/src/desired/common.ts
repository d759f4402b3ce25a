// What every desired object shares: the endpoint it is for, the controller's labels, the owner
// reference that lets garbage collection delete it with the endpoint, and the hash of its content
// that keeps an unchanged object from being written again. Pure.
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { apiVersionOf, resources, type KubeObject, type Resource } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import { desiredHashAnnotation, labels, managerName } from './labels.ts';
import { contentVersion } from './names.ts';

export interface Desired {
  resource: Resource;
  object: KubeObject;
  /**
   * A Deployment whose replicas an autoscaler owns: the count a new one starts at (the controller
   * hands the field over to the autoscaler, and never writes it again).
   */
  initialReplicas?: number;
}

export interface EndpointContext {
  endpoint: MachineLearningEndpoint;
  config: OperatorConfig;
}

export function hostOf({ endpoint, config }: EndpointContext): string {
  return endpoint.spec.host || `${endpoint.metadata.name}.${endpoint.metadata.namespace}.${config.defaultDomain}`;
}

export function urlOf(ctx: EndpointContext): string {
  const { tls } = ctx.config.gateway;
  return tls.enabled
    ? `https://${hostOf(ctx)}${tls.port === 443 ? '' : `:${tls.port}`}`
    : `http://${hostOf(ctx)}${ctx.config.gateway.port === 80 ? '' : `:${ctx.config.gateway.port}`}`;
}

function ownerReference(endpoint: MachineLearningEndpoint) {
  return {
    apiVersion: apiVersionOf(resources.endpoint),
    kind: resources.endpoint.kind,
    name: endpoint.metadata.name!,
    uid: endpoint.metadata.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Name of the per-endpoint gateway (Istio Gateway or Gateway API Gateway). */
export const gatewayName = (endpoint: string) => `${endpoint}-gw`;

export function commonLabels(
  endpoint: MachineLearningEndpoint,
  component: string,
  name: string,
): Record<string, string> {
  return {
    [labels.managedBy]: managerName,
    [labels.partOf]: managerName,
    [labels.name]: name,
    [labels.appInstance]: endpoint.metadata.name!,
    [labels.component]: component,
    [labels.endpoint]: endpoint.metadata.name!,
  };
}

/** Stamps the hash of the object's content so an unchanged object is never written again. */
export function withHash(resource: Resource, object: KubeObject): Desired {
  const hash = contentVersion(object);
  object.metadata.annotations = { ...object.metadata.annotations, [desiredHashAnnotation]: hash };
  return { resource, object };
}

export function namespaced(
  resource: Resource,
  endpoint: MachineLearningEndpoint,
  name: string,
  objectLabels: Record<string, string>,
  rest: Omit<KubeObject, 'metadata' | 'apiVersion' | 'kind'>,
  annotations?: Record<string, string>,
): Desired {
  return withHash(resource, {
    apiVersion: apiVersionOf(resource),
    kind: resource.kind,
    metadata: {
      name,
      namespace: endpoint.metadata.namespace,
      labels: objectLabels,
      ...(annotations ? { annotations } : {}),
      ownerReferences: [ownerReference(endpoint)],
    },
    ...rest,
  });
}
