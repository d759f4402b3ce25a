// Progressive delivery with the Istio provider. Envoy cannot run here, so the traffic that Istio's
// proxies would report is produced from the live VirtualService: every quarter second, requests are
// counted per destination in the weights it carries, with the status codes and durations each
// version answers with, as series of the shape Istio emits (istio_requests_total,
// istio_request_duration_milliseconds), which the cluster's real Prometheus scrapes. The built-in
// Istio queries of the metric gates run against them; istioctl analyze checks the VirtualService at
// every step.
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import type {
  AnalysisCheck,
  MachineLearningEndpoint,
  MachineLearningEndpointRollout,
} from '../../controller/src/api/generated.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { analyze, unexplained } from './istio.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  inService,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import { prometheus, startIstioExporter, type IstioExporter } from './prometheus.ts';
import { installRelease, uninstallRelease } from './traffic.ts';
import { servedModel } from './fixtures.ts';

let namespace: string;
let release: Release;
let controller: ControllerProcess;
let exporter: IstioExporter;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'progressive-istio', { 'pod-security.kubernetes.io/enforce': 'restricted' });
  exporter = await startIstioExporter();
  // The istio provider, and the metric gates read Istio's standard metrics (the default with it).
  release = await installRelease(namespace, [`controller.config.prometheus.url=${prometheus().url}`], 'istio');
  controller = await runController([namespace], { release });
});
afterAll(async () => {
  await controller?.stop();
  await exporter?.close();
  if (namespace) await deleteNamespace(admin, namespace);
  if (release) await uninstallRelease(release);
});

type VirtualService = KubeObject & {
  spec: { http: { name: string; route: { destination: { host: string }; weight: number }[] }[] };
};

/** The weights the live VirtualService's split gives each Service (its route named variants; the others serve x-ml-variant). */
async function vsWeights(name: string): Promise<Map<string, number>> {
  const vs = await user.get<VirtualService>(resources.virtualService, namespace, name);
  const weights = new Map<string, number>();
  for (const r of vs?.spec.http.find((h) => h.name === 'variants')?.route ?? []) {
    const service = r.destination.host.split('.')[0];
    weights.set(service, (weights.get(service) ?? 0) + (r.weight ?? 0));
  }
  return weights;
}

/**
 * What Istio's proxies would report while a gateway sends 40 requests a quarter second to the
 * endpoint in the VirtualService's weights: each Service answers as `answer` says. Bounded in time.
 */
function mesh(
  name: string,
  answer: (service: string) => { errorShare: number; ms: number },
  maxMs: number,
): { stop(): Promise<void> } {
  let stopped = false;
  const done = (async () => {
    const deadline = Date.now() + maxMs;
    while (!stopped && Date.now() < deadline) {
      for (const [service, weight] of await vsWeights(name)) {
        const n = Math.round((40 * weight) / 100);
        if (n === 0) continue;
        const { errorShare, ms } = answer(service);
        const errors = Math.round(n * errorShare);
        if (errors > 0) exporter.record(namespace, service, 503, errors, ms);
        if (n - errors > 0) exporter.record(namespace, service, 200, n - errors, ms);
      }
      await delay(250);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

const model = servedModel('istio-progressive');
const checks: AnalysisCheck[] = [
  { name: 'errors', builtin: 'errorRate', max: 0.05, intervalSeconds: 5 },
  { name: 'p99', builtin: 'latencyP99', max: 100, intervalSeconds: 5 },
];
const progressing = (e: MachineLearningEndpoint) => e.status?.conditions?.find((c) => c.type === 'Progressing');

describe('Linear rollout with the Istio provider, gated on Istio metrics in Prometheus', () => {
  it('promotes a healthy candidate step by step: the VirtualService carries each step and passes istioctl analyze at every one', async () => {
    const rollout: MachineLearningEndpointRollout = {
      strategy: 'Linear',
      linear: { stepPercent: 25, intervalSeconds: 10 },
      analysis: { checks },
      drainSeconds: 2,
    };
    await applyModel(namespace, 'linear', model('acme/linear:1'));
    await applyConfig(namespace, 'linear', { models: [{ model: 'linear' }] });
    await applyEndpoint(namespace, 'linear', { config: 'linear', rollout });
    const v1 = await waitForEndpoint(namespace, 'linear', 'InService', inService, 90_000);
    const traffic = mesh('linear', () => ({ errorShare: 0, ms: 20 }), 150_000);
    try {
      await applyModel(namespace, 'linear', model('acme/linear:2'));
      const seen: number[] = [];
      for (const weight of [25, 50, 75]) {
        const e = await waitForEndpoint(
          namespace,
          'linear',
          `the ${weight}% step`,
          (x) => x.status?.rollout?.phase === 'Progressing' && (x.status.rollout.weight ?? 0) >= weight,
          60_000,
        );
        expect(e.status!.rollout!.weight).toBe(weight);
        const candidate = e
          .status!.traffic!.filter((t) => t.version === e.status!.rollout!.version)
          .map((t) => t.service);
        const weights = await vsWeights('linear');
        const candidateWeight = [...weights].filter(([s]) => candidate.includes(s)).reduce((n, [, w]) => n + w, 0);
        const messages = await analyze(namespace);
        process.stdout.write(
          `[istio] step ${weight}%: VirtualService ${JSON.stringify(Object.fromEntries(weights))}; istioctl analyze: ${messages.map((m) => m.code).join(', ') || 'nothing'}\n`,
        );
        if (candidateWeight === weight) seen.push(weight);
        expect(unexplained(messages, namespace, ['linear-gw'])).toEqual([]);
      }
      expect(seen).toEqual([25, 50, 75]);
      const promoted = await waitForEndpoint(
        namespace,
        'linear',
        'promoted',
        (x) => inService(x) && x.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion,
        60_000,
      );
      expect(promoted.status!.rollout!.phase).toBe('Promoted');
      expect(promoted.status!.rollout!.analysis!.map((a) => [a.name, a.result])).toEqual([
        ['errors', 'Passed'],
        ['p99', 'Passed'],
      ]);
      process.stdout.write(`[istio] promoted with the gates: ${JSON.stringify(promoted.status!.rollout!.analysis)}\n`);
      expect(unexplained(await analyze(namespace), namespace, ['linear-gw'])).toEqual([]);
    } finally {
      await traffic.stop();
    }
  });

  it('rolls back a candidate whose proxies report 50% 503s, in one write of the VirtualService', async () => {
    const serving = await waitForEndpoint(namespace, 'linear', 'InService', inService);
    const servingServices = serving.status!.traffic!.map((t) => t.service);
    const traffic = mesh(
      'linear',
      (service) => ({ errorShare: servingServices.includes(service) ? 0 : 0.5, ms: 20 }),
      90_000,
    );
    try {
      await applyModel(namespace, 'linear', model('acme/linear:3'));
      const rolledBack = await waitForEndpoint(
        namespace,
        'linear',
        'rolled back',
        (x) => x.status?.rollout?.phase === 'RolledBack',
        60_000,
      );
      expect(progressing(rolledBack)).toMatchObject({
        reason: 'AnalysisFailed',
        message: expect.stringMatching(/check errors = 0\.\d+, outside its bound \(<= 0\.05\)/),
      });
      expect(rolledBack.status!.endpointConfigVersion).toBe(serving.status!.endpointConfigVersion);
      expect([...(await vsWeights('linear')).keys()]).toEqual(servingServices);
      expect(unexplained(await analyze(namespace), namespace, ['linear-gw'])).toEqual([]);
    } finally {
      await traffic.stop();
    }
  });
});
