import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpoint, MachineLearningEndpointConfigVariant } from '../api/generated.ts';
import { defaultConfig, type OperatorConfig } from '../options/config.ts';
import { autoscaler, autoscalingProblem, requestRateQuery } from './autoscaling.ts';
import { replicasOwnerAnnotation } from './labels.ts';
import * as desired from './objects.ts';
import { planFromTemplates, type VariantPlan } from './plan.ts';

const endpoint: MachineLearningEndpoint = {
  metadata: { name: 'titanic', namespace: 'ml', uid: 'uid-1', generation: 1 },
  spec: { config: 'titanic' },
};
const hpa: OperatorConfig = { ...defaultConfig, fetcher: { image: 'ml-operator/controller:1' } };
const keda: OperatorConfig = {
  ...hpa,
  autoscaling: { engine: 'keda' },
  prometheus: { url: 'http://prometheus.monitoring:9090', dataPlane: 'istio' },
};

function variant(v: Partial<MachineLearningEndpointConfigVariant>): VariantPlan {
  const r = planFromTemplates(
    'titanic',
    'titanic',
    { models: [{ model: 'titanic', ...v }] },
    new Map([['titanic', { image: 'acme/titanic:1' }]]),
  );
  if (!r.ok) throw new Error('unresolved');
  return r.plan.variants[0];
}
const cpu = variant({
  cpus: '1',
  autoscaling: { minInstances: 2, maxInstances: 10, target: { cpuUtilization: 70 }, scaleDownStabilizationSeconds: 60 },
});
const rps = variant({ autoscaling: { minInstances: 0, maxInstances: 8, target: { requestsPerSecond: 20 } } });

describe('autoscaled variants', () => {
  it('get a HorizontalPodAutoscaler on CPU, with the bounds and the scale-down window', () => {
    const o = autoscaler({ endpoint, config: hpa }, cpu).object;
    expect(o.kind).toBe('HorizontalPodAutoscaler');
    expect(o.metadata.name).toBe(cpu.instance);
    expect(o.spec).toEqual({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: cpu.instance },
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [
        { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
      ],
      behavior: { scaleDown: { stabilizationWindowSeconds: 60 } },
    });
  });

  it('get a KEDA ScaledObject on requests per second from the data plane, down to zero when asked', () => {
    const o = autoscaler({ endpoint, config: keda }, rps).object as {
      kind?: string;
      spec: {
        minReplicaCount: number;
        maxReplicaCount: number;
        triggers: { type: string; metadata: Record<string, string> }[];
      };
    };
    expect(o.kind).toBe('ScaledObject');
    expect(o.spec.minReplicaCount).toBe(0);
    expect(o.spec.maxReplicaCount).toBe(8);
    expect(o.spec.triggers).toEqual([
      {
        type: 'prometheus',
        metadata: {
          serverAddress: 'http://prometheus.monitoring:9090',
          query: `sum(rate(istio_requests_total{reporter="destination",destination_service_namespace="ml",destination_service_name=~"${rps.instance}"}[1m])) or vector(0)`,
          threshold: '20',
          activationThreshold: '0',
        },
      },
    ]);
    expect(requestRateQuery({ ...keda, prometheus: { ...keda.prometheus, dataPlane: 'traefik' } }, 'ml', 'svc')).toBe(
      'sum(rate(traefik_service_requests_total{service=~"ml-(svc)-(http-80@kubernetesgateway|80@kubernetescrd)"}[1m])) or vector(0)',
    );
  });

  it('leave replicas out of the Deployment (the autoscaler owns them), and start it at the count given', () => {
    const d = desired.deployment({ endpoint, config: hpa }, cpu, 600, 5);
    expect((d.object.spec as { replicas?: number }).replicas).toBeUndefined();
    expect(d.initialReplicas).toBe(5);
    expect(d.object.metadata.annotations?.[replicasOwnerAnnotation]).toBe('autoscaler');
    const fixed = desired.deployment({ endpoint, config: hpa }, variant({ instances: 3 }), 600, 3);
    expect((fixed.object.spec as { replicas?: number }).replicas).toBe(3);
    expect(fixed.initialReplicas).toBeUndefined();
  });

  it('keep their model version when the bounds or the target change: the autoscaler changes in place', () => {
    expect(
      variant({ cpus: '1', autoscaling: { minInstances: 1, maxInstances: 3, target: { cpuUtilization: 50 } } })
        .instance,
    ).toBe(cpu.instance);
  });

  it('are refused, with the reason, where the engine or the chart cannot carry them', () => {
    expect(autoscalingProblem(hpa, [rps])?.message).toMatch(/requestsPerSecond target needs the KEDA engine/);
    expect(autoscalingProblem({ ...keda, prometheus: { url: '', dataPlane: '' } }, [rps])?.message).toMatch(
      /set the chart value controller.config.prometheus.url/,
    );
    expect(
      autoscalingProblem(hpa, [
        variant({ autoscaling: { minInstances: 1, maxInstances: 2, target: { cpuUtilization: 50 } } }),
      ])?.message,
    ).toMatch(/set cpus on the variant/);
    expect(autoscalingProblem(hpa, [cpu])).toBeUndefined();
    expect(autoscalingProblem(keda, [rps])).toBeUndefined();
  });
});
