// The built-in metric gates with Traefik's mirroring on (chart value
// controller.config.routing.gatewayAPI.mirroring=TraefikService, needed for shadows on Traefik):
// every primary Service is then reached through its mirroring TraefikService, and Traefik names its
// series `<namespace>-<service>-80@kubernetescrd` instead of the HTTPRoute backend's name. Under
// real load through the gateway, with a shadow mirrored, a healthy Canary is promoted and a broken
// one rolled back, each on values the checks measured from Traefik's series in Prometheus.
import { inject, describe, expect, it } from 'vitest';
import type { AnalysisCheck, MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { waitFor } from '../../ci/wait.ts';
import { applyConfig, applyEndpoint, applyModel, inService, waitForEndpoint } from './ml.ts';
import { gatewaySuite, servedModel } from './fixtures.ts';
import { backendsOf, expectServed, load, printReport, waitForGateway } from './traffic.ts';

const suite = gatewaySuite('mirroring-gates', [
  'controller.config.routing.gatewayAPI.mirroring=TraefikService',
  `controller.config.prometheus.url=${inject('prometheus').url}`,
  'controller.config.prometheus.dataPlane=traefik',
]);
const model = servedModel('mirroring-gates');
const checks: AnalysisCheck[] = [
  { name: 'errors', builtin: 'errorRate', max: 0.05, intervalSeconds: 5 },
  { name: 'p99', builtin: 'latencyP99', max: 500, intervalSeconds: 5 },
];
const progressing = (e: MachineLearningEndpoint) => e.status?.conditions?.find((c) => c.type === 'Progressing');

/** An endpoint whose primary is mirrored to a shadow, serving through Traefik's mirroring TraefikService. */
async function serveMirrored(name: string): Promise<MachineLearningEndpoint> {
  await applyModel(suite.namespace, name, model(`acme/${name}:1`));
  await applyModel(suite.namespace, `${name}-shadow`, model(`acme/${name}-shadow:1`));
  await applyConfig(suite.namespace, name, {
    models: [{ model: name }, { model: `${name}-shadow`, shadow: { percent: 10 } }],
  });
  await applyEndpoint(suite.namespace, name, {
    config: name,
    rollout: { strategy: 'Canary', canary: { percent: 20, bakeSeconds: 15 }, analysis: { checks }, drainSeconds: 5 },
  });
  const e = await waitForEndpoint(
    suite.namespace,
    name,
    'InService and mirrored',
    (x) => inService(x) && x.status?.shadows?.[0]?.mirrored === true,
    90_000,
  );
  await waitForGateway(suite.host(name));
  return e;
}

describe('metric gates with Traefik mirroring on', () => {
  it('promote a healthy Canary on values measured through the mirroring TraefikService', async () => {
    const v1 = await serveMirrored('healthy');
    const run = load(suite.host('healthy'), { requests: 8000, rate: 60, concurrency: 32, maxDurationMs: 120_000 });
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 100 ? true : undefined));
      const changedAt = run.elapsed();
      await applyModel(suite.namespace, 'healthy', model('acme/healthy:2'));
      const step = await waitForEndpoint(
        suite.namespace,
        'healthy',
        'the canary step',
        (e) => e.status?.rollout?.weight === 20,
        100_000,
      );
      const stepAt = run.elapsed();
      const v2 = await waitForEndpoint(
        suite.namespace,
        'healthy',
        'promoted',
        (e) =>
          inService(e) &&
          e.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion &&
          e.status!.rollout?.phase === 'Promoted',
        100_000,
      );
      const promotedAt = run.elapsed();
      await waitFor('load after the promotion', 20_000, async () =>
        run.elapsed() > promotedAt + 8000 ? true : undefined,
      );
      run.stop();
      const r = await run.done;
      printReport('a healthy Canary with Traefik mirroring', r);
      const failed = run.samples
        .filter((x) => x.status < 200 || x.status >= 300)
        .map((x) => `${x.status} at ${(x.start / 1000).toFixed(2)} s`);
      process.stdout.write(
        `[mirroring-gates] changed at ${(changedAt / 1000).toFixed(2)} s, step ${step.status!.rollout!.step} seen at ${(stepAt / 1000).toFixed(2)} s, promoted at ${(promotedAt / 1000).toFixed(2)} s; failed: ${failed.join(', ') || 'none'}\n`,
      );
      const analysis = v2.status!.rollout!.analysis!;
      process.stdout.write(
        `[mirroring-gates] promoted: ${analysis.map((a) => `${a.name} = ${a.value} (${a.result})`).join(', ')}\n`,
      );
      expect(analysis.map((a) => [a.name, a.result])).toEqual([
        ['errors', 'Passed'],
        ['p99', 'Passed'],
      ]);
      expect(Number(analysis.find((a) => a.name === 'errors')!.value)).toBe(0);
      expect(Number(analysis.find((a) => a.name === 'p99')!.value)).toBeGreaterThan(0);
      expectServed(run, { backends: backendsOf(v1, v2), namespace: suite.namespace });
    } finally {
      run.stop();
    }
  });

  it('roll a broken Canary back on its measured error rate', async () => {
    const v1 = await serveMirrored('broken');
    const run = load(suite.host('broken'), { requests: 8000, rate: 60, concurrency: 32, maxDurationMs: 120_000 });
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 100 ? true : undefined));
      await applyModel(suite.namespace, 'broken', model('acme/broken:2', { DEMO_ERROR_RATE: '0.5' }));
      const rolledBack = await waitForEndpoint(
        suite.namespace,
        'broken',
        'rolled back',
        (e) => e.status?.rollout?.phase === 'RolledBack',
        90_000,
      );
      run.stop();
      const r = await run.done;
      printReport('a broken Canary with Traefik mirroring', r);
      process.stdout.write(`[mirroring-gates] rolled back: ${progressing(rolledBack)!.message}\n`);
      expect(rolledBack.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
      expect(progressing(rolledBack)).toMatchObject({
        reason: 'AnalysisFailed',
        message: expect.stringMatching(/check errors = 0\.\d+, outside its bound \(<= 0\.05\)/),
      });
      const value = Number(progressing(rolledBack)!.message.match(/check errors = (0\.\d+)/)![1]);
      // The candidate fails half its requests: the measured share is about that.
      expect(value).toBeGreaterThan(0.2);
      expect(value).toBeLessThan(0.8);
    } finally {
      run.stop();
    }
  });
});
