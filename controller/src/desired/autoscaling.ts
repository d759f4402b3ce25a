// The autoscaler of a variant with `autoscaling`: a HorizontalPodAutoscaler (autoscaling/v2) or a
// KEDA ScaledObject, as the chart's engine says, scaling the variant's Deployment between its bounds
// on CPU use or on requests per second from the data plane's metrics in Prometheus. The autoscaler
// owns the Deployment's replicas; the controller only starts a new Deployment at a count. Pure.
import type { VariantAutoscaling } from '../api/generated.ts';
import type { ConditionInput } from './status.ts';
import type { Resource } from '../kube/resources.ts';
import type { OperatorConfig } from '../options/config.ts';
import { commonLabels, namespaced, type Desired, type EndpointContext } from './common.ts';
import type { VariantPlan } from './plan.ts';
import { regexEscaped, requestMetrics, serviceMatchers, type DataPlane } from './data-plane-metrics.ts';
import { labels } from './labels.ts';

export const horizontalPodAutoscalerResource: Resource = {
  group: 'autoscaling',
  version: 'v2',
  kind: 'HorizontalPodAutoscaler',
  plural: 'horizontalpodautoscalers',
  namespaced: true,
};
export const scaledObjectResource: Resource = {
  group: 'keda.sh',
  version: 'v1alpha1',
  kind: 'ScaledObject',
  plural: 'scaledobjects',
  namespaced: true,
};

export const autoscalerResource = (config: OperatorConfig): Resource =>
  config.autoscaling.engine === 'keda' ? scaledObjectResource : horizontalPodAutoscalerResource;

/** The field manager that holds a new Deployment's starting replicas until the autoscaler takes them over. */
export const replicasFieldManager = 'ml-operator-initial-replicas';

/** Requests per second a Service receives, from the data plane's metrics. */
export function requestRateQuery(config: OperatorConfig, namespace: string, service: string, window = '1m'): string {
  const dataPlane = config.prometheus.dataPlane || (config.routing.provider === 'istio' ? 'istio' : '');
  const source: DataPlane = dataPlane === 'traefik' ? 'traefik' : 'istio';
  return `sum(rate(${requestMetrics[source].requests}{${serviceMatchers(source, namespace, regexEscaped(service))}}[${window}])) or vector(0)`;
}

/** Why the chart's engine cannot scale this variant as asked, if so: the new version does not roll out. */
export function autoscalingProblem(config: OperatorConfig, plans: readonly VariantPlan[]): ConditionInput | undefined {
  for (const v of plans) {
    const a = v.variant.autoscaling;
    if (!a) continue;
    const problem = (message: string): ConditionInput => ({
      type: 'TemplatesAvailable',
      status: 'False',
      reason: 'AutoscalingUnsupported',
      message: `variant ${v.variant.model}: ${message}`,
    });
    if (a.target.requestsPerSecond !== undefined && config.autoscaling.engine !== 'keda') {
      return problem(
        'a requestsPerSecond target needs the KEDA engine (chart value controller.config.autoscaling.engine=keda); the HorizontalPodAutoscaler engine scales on cpuUtilization',
      );
    }
    if (a.minInstances === 0 && config.autoscaling.engine !== 'keda') {
      return problem(
        'minInstances 0 (scale to zero) needs the KEDA engine (chart value controller.config.autoscaling.engine=keda)',
      );
    }
    if (a.target.requestsPerSecond !== undefined && !config.prometheus.url) {
      return problem(
        'a requestsPerSecond target is measured in Prometheus: set the chart value controller.config.prometheus.url',
      );
    }
    if (
      a.target.requestsPerSecond !== undefined &&
      config.routing.provider === 'gatewayAPI' &&
      !config.prometheus.dataPlane
    ) {
      return problem(
        'with the gatewayAPI provider, a requestsPerSecond target needs to know whose metrics to read: set the chart value controller.config.prometheus.dataPlane (istio or traefik)',
      );
    }
    if (a.target.cpuUtilization !== undefined && v.variant.cpus === undefined) {
      return problem('a cpuUtilization target is a share of the CPU request: set cpus on the variant');
    }
  }
  return undefined;
}

function behavior(a: VariantAutoscaling) {
  return a.scaleDownStabilizationSeconds !== undefined
    ? { behavior: { scaleDown: { stabilizationWindowSeconds: a.scaleDownStabilizationSeconds } } }
    : {};
}

/** The autoscaler of a variant, named like its Deployment. */
export function autoscaler(ctx: EndpointContext, v: VariantPlan): Desired {
  const { endpoint, config } = ctx;
  const a = v.variant.autoscaling!;
  const objectLabels = {
    ...commonLabels(endpoint, 'autoscaler', v.variant.model),
    [labels.modelInstance]: v.instance,
    [labels.version]: v.version,
  };
  if (config.autoscaling.engine === 'keda') {
    const triggers =
      a.target.requestsPerSecond !== undefined
        ? [
            {
              type: 'prometheus',
              metadata: {
                serverAddress: config.prometheus.url,
                query: requestRateQuery(config, endpoint.metadata.namespace!, v.instance),
                threshold: String(a.target.requestsPerSecond),
                ...(a.minInstances === 0 ? { activationThreshold: '0' } : {}),
              },
            },
          ]
        : [{ type: 'cpu', metricType: 'Utilization', metadata: { value: String(a.target.cpuUtilization) } }];
    return namespaced(scaledObjectResource, endpoint, v.instance, objectLabels, {
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: v.instance },
        minReplicaCount: a.minInstances,
        maxReplicaCount: a.maxInstances,
        pollingInterval: 15,
        ...(a.scaleDownStabilizationSeconds !== undefined
          ? { advanced: { horizontalPodAutoscalerConfig: behavior(a) } }
          : {}),
        triggers,
      },
    });
  }
  return namespaced(horizontalPodAutoscalerResource, endpoint, v.instance, objectLabels, {
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: v.instance },
      minReplicas: a.minInstances,
      maxReplicas: a.maxInstances,
      metrics: [
        {
          type: 'Resource',
          resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: a.target.cpuUtilization } },
        },
      ],
      ...behavior(a),
    },
  });
}
