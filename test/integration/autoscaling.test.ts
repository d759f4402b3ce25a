// Autoscaled variants. With the HorizontalPodAutoscaler engine: the HPA the controller writes, the
// replicas it hands over (what the autoscaler sets is never reset by the controller), and a
// blue/green switch of a variant scaled to 5 that starts the new version at 5, under load, with 0
// failed requests. The local cluster has no resource metrics pipeline (its pods are processes of one
// runtime, with no kubelet to report their CPU), so the CPU decision is made here as the HPA
// controller makes it: through the Deployment's scale subresource. With the KEDA engine, the real
// chain on requests per second, from the load to the pods.
import { describe, expect, inject, it } from 'vitest';
import { waitFor } from '../../ci/wait.ts';
import { horizontalPodAutoscalerResource, scaledObjectResource } from '../../controller/src/desired/autoscaling.ts';
import { traefikServicePattern } from '../../controller/src/desired/data-plane-metrics.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  getEndpoint,
  inService,
  k8s,
  user,
  waitForEndpoint,
} from './ml.ts';
import { gatewaySuite, servedModel } from './fixtures.ts';
import { expectServed, load, printReport, waitForGateway } from './traffic.ts';

const suite = gatewaySuite('autoscaling');
const model = servedModel('autoscaling');
const apps = () => admin.makeApiClient(k8s.AppsV1Api);
const replicasOf = async (name: string) =>
  (await apps().readNamespacedDeployment({ name, namespace: suite.namespace })).spec?.replicas;
type Hpa = KubeObject & {
  spec: {
    minReplicas: number;
    maxReplicas: number;
    scaleTargetRef: { name: string };
    metrics: unknown[];
    behavior?: unknown;
  };
};

describe('autoscaled variants (HorizontalPodAutoscaler engine)', () => {
  it('get an HPA with their bounds and target, and start at minInstances', async () => {
    await applyModel(suite.namespace, 'scaled', model('acme/scaled:1'));
    await applyConfig(suite.namespace, 'scaled', {
      models: [
        {
          model: 'scaled',
          cpus: '100m',
          memory: '64Mi',
          autoscaling: {
            minInstances: 2,
            maxInstances: 10,
            target: { cpuUtilization: 70 },
            scaleDownStabilizationSeconds: 30,
          },
        },
      ],
    });
    await applyEndpoint(suite.namespace, 'scaled', { config: 'scaled', rollout: { drainSeconds: 5 } });
    const e = await waitForEndpoint(
      suite.namespace,
      'scaled',
      'InService, 2/2',
      (x) => inService(x) && x.status!.ready === '2/2',
      90_000,
    );
    const instance = e.status!.traffic![0].service;
    expect(await replicasOf(instance)).toBe(2);
    const hpa = await user.get<Hpa>(horizontalPodAutoscalerResource, suite.namespace, instance);
    expect(hpa!.spec).toEqual({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: instance },
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [
        { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
      ],
      behavior: expect.objectContaining({ scaleDown: expect.objectContaining({ stabilizationWindowSeconds: 30 }) }),
    });
  });

  it("keeps what the autoscaler sets: the controller's own writes never reset the replicas", async () => {
    const e = await getEndpoint(suite.namespace, 'scaled');
    const instance = e.status!.traffic![0].service;
    // What the HPA controller does when it scales: a write of the scale subresource.
    await apps().patchNamespacedDeploymentScale(
      { name: instance, namespace: suite.namespace, body: [{ op: 'replace', path: '/spec/replicas', value: 5 }] },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch),
    );
    // A change of the endpoint makes the controller apply everything again.
    await applyEndpoint(suite.namespace, 'scaled', { config: 'scaled', rollout: { drainSeconds: 6 } });
    const after = await waitForEndpoint(
      suite.namespace,
      'scaled',
      'the change observed, 5/5 ready',
      (x) => x.status?.observedGeneration === x.metadata?.generation && x.status!.ready === '5/5',
      60_000,
    );
    expect(after.status!.traffic![0]).toMatchObject({ replicas: 5, readyReplicas: 5 });
    expect(await replicasOf(instance)).toBe(5);
  });

  it('switches blue/green at the serving count: the new version starts at 5, 0 failed requests', async () => {
    const before = await waitForEndpoint(suite.namespace, 'scaled', 'InService', inService);
    const old = before.status!.traffic![0].service;
    await waitForGateway(suite.host('scaled'));
    const run = load(suite.host('scaled'), { requests: 6000, rate: 60, concurrency: 128, maxDurationMs: 90_000 });
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 100 ? true : undefined));
      await applyModel(suite.namespace, 'scaled', model('acme/scaled:2'));
      const pending = await waitForEndpoint(
        suite.namespace,
        'scaled',
        'the new version deploying',
        (x) => x.status?.pendingEndpointConfigVersion !== undefined,
        30_000,
      );
      const next = (await user.list(resources.deployment, suite.namespace)).items
        .map((d) => d.metadata.name)
        .find((n) => n.startsWith('scaled-') && n !== old)!;
      expect(await replicasOf(next)).toBe(5);
      const switched = await waitForEndpoint(
        suite.namespace,
        'scaled',
        'switched',
        (x) => inService(x) && x.status!.endpointConfigVersion === pending.status!.pendingEndpointConfigVersion,
        90_000,
      );
      expect(switched.status!.traffic![0]).toMatchObject({ service: next, replicas: 5, readyReplicas: 5 });
      // The old version goes, and its HPA with it; the new one has its own.
      await waitFor('the old Deployment and its HPA removed', 60_000, async () =>
        (await user.get(resources.deployment, suite.namespace, old)) === undefined &&
        (await user.get(horizontalPodAutoscalerResource, suite.namespace, old)) === undefined
          ? true
          : undefined,
      );
      expect(await user.get(horizontalPodAutoscalerResource, suite.namespace, next)).toBeDefined();
      await waitFor('load after the switch', 20_000, async () =>
        run.samples.filter((s) => s.backend?.instance === next).length > 200 ? true : undefined,
      );
      run.stop();
      const r = await run.done;
      printReport('blue/green switch of a variant scaled to 5', r);
      expectServed(run, { backends: [old, next], namespace: suite.namespace });
    } finally {
      run.stop();
    }
  });
});

// The whole chain with the KEDA engine: load through the gateway, Traefik's metrics in the real
// Prometheus, KEDA's operator and external metrics API (registered with the aggregation layer), the
// HorizontalPodAutoscaler of kube-controller-manager, more pods ready and serving; then back down.
// With Traefik's mirroring on, every primary Service is reached through its mirroring TraefikService,
// whose series Traefik names differently: the same scaling must read those.
describe.each([
  ['routes to the Services', 'keda-scaling', []],
  [
    'routes through the mirroring TraefikServices',
    'keda-mirroring',
    ['controller.config.routing.gatewayAPI.mirroring=TraefikService'],
  ],
])('autoscaled variants (KEDA engine, requests per second), Traefik %s', (_, name, values) => {
  const keda = gatewaySuite(name, [
    'controller.config.autoscaling.engine=keda',
    `controller.config.prometheus.url=${inject('prometheus').url}`,
    'controller.config.prometheus.dataPlane=traefik',
    ...values,
  ]);

  it(
    'scales up under 40 requests a second to 4 ready pods that serve, and back to 1 when the load stops',
    { timeout: 420_000 },
    async () => {
      await applyModel(keda.namespace, 'busy', model('acme/busy:1'));
      await applyConfig(keda.namespace, 'busy', {
        models: [
          {
            model: 'busy',
            autoscaling: {
              minInstances: 1,
              maxInstances: 4,
              target: { requestsPerSecond: 10 },
              scaleDownStabilizationSeconds: 10,
            },
          },
        ],
      });
      await applyEndpoint(keda.namespace, 'busy', { config: 'busy' });
      const e = await waitForEndpoint(
        keda.namespace,
        'busy',
        'InService 1/1',
        (x) => inService(x) && x.status!.ready === '1/1',
        90_000,
      );
      const instance = e.status!.traffic![0].service;
      const so = await user.get<
        KubeObject & { spec: { triggers: { type: string; metadata: { query: string; threshold: string } }[] } }
      >(scaledObjectResource, keda.namespace, instance);
      expect(so!.spec.triggers[0]).toMatchObject({
        type: 'prometheus',
        metadata: {
          threshold: '10',
          query: expect.stringContaining(`service=~"${traefikServicePattern(keda.namespace, instance)}"`),
        },
      });
      // KEDA's operator makes the HorizontalPodAutoscaler the controller-manager then drives.
      await waitFor("KEDA's HorizontalPodAutoscaler", 60_000, async () =>
        (await user.get(horizontalPodAutoscalerResource, keda.namespace, `keda-hpa-${instance}`)) ? true : undefined,
      );
      await waitForGateway(keda.host('busy'));

      const run = load(keda.host('busy'), { requests: 12_000, rate: 40, concurrency: 128, maxDurationMs: 240_000 });
      const started = Date.now();
      try {
        const up = await waitForEndpoint(
          keda.namespace,
          'busy',
          '4/4 ready',
          (x) => x.status!.ready === '4/4',
          180_000,
        );
        const upSeconds = (Date.now() - started) / 1000;
        expect(up.status!.traffic![0]).toMatchObject({ service: instance, replicas: 4, readyReplicas: 4 });
        // The new pods take their share of the requests.
        const mark = run.elapsed();
        await waitFor('requests answered by the scaled-up pods', 30_000, async () =>
          new Set(run.samples.filter((s) => s.start > mark && s.backend?.pod).map((s) => s.backend!.pod)).size === 4
            ? true
            : undefined,
        );
        run.stop();
        const r = await run.done;
        printReport(`40 requests a second while KEDA scales 1 -> 4 (${name})`, r);
        expectServed(run, { backends: [instance], namespace: keda.namespace });
        const stopped = Date.now();
        await waitForEndpoint(
          keda.namespace,
          'busy',
          'back to 1/1',
          (x) => x.status!.ready === '1/1' && x.status!.traffic![0].replicas === 1,
          240_000,
        );
        const downSeconds = (Date.now() - stopped) / 1000;
        process.stdout.write(
          `[autoscaling] KEDA (${name}): 1 -> 4 ready pods ${upSeconds.toFixed(1)} s after 40 requests a second began (target 10 per pod); back to 1 ${downSeconds.toFixed(1)} s after the load stopped (a 1 min rate window, 10 s stabilization)\n`,
        );
      } finally {
        run.stop();
      }
    },
  );

  it('hands the replicas back when autoscaling is removed: the ScaledObject goes, the fixed count holds', async () => {
    const e = await getEndpoint(keda.namespace, 'busy');
    const instance = e.status!.traffic![0].service;
    await applyConfig(keda.namespace, 'busy', { models: [{ model: 'busy', instances: 2 }] });
    await waitForEndpoint(
      keda.namespace,
      'busy',
      '2/2 ready',
      (x) => inService(x) && x.status!.ready === '2/2',
      90_000,
    );
    await waitFor('the ScaledObject removed', 30_000, async () =>
      (await user.get(scaledObjectResource, keda.namespace, instance)) === undefined ? true : undefined,
    );
    expect(
      (await admin.makeApiClient(k8s.AppsV1Api).readNamespacedDeployment({ name: instance, namespace: keda.namespace }))
        .spec?.replicas,
    ).toBe(2);
  });
});
