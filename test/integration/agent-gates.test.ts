// Metric gates measured by the model agents, with no Prometheus anywhere: a release whose controller
// has no Prometheus address, real load through the gateway (Traefik, Gateway API), and the built-in
// errorRate and latencyP99 checks with `source: Agents`. What a user checks: a healthy candidate is
// promoted with 0 failed requests, a broken one (50% errors) and a slow one (400 ms) are rolled back
// with the value the agents measured named in the condition, and no request fails after the
// rollback. Every request has 3 s to be answered: a stalled one is a failed one.
import { describe, expect, it } from 'vitest';
import { rollbackProblems } from '../../ci/traffic/figures.ts';
import { waitFor } from '../../ci/wait.ts';
import type { AnalysisCheck, MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { gatewaySuite, servedModel } from './fixtures.ts';
import { applyConfig, applyEndpoint, applyModel, inService, waitForEndpoint } from './ml.ts';
import { failedOf, notCandidateErrors, untilElapsed } from './served.ts';
import { load, printReport, waitForGateway } from './traffic.ts';

// No controller.config.prometheus: the checks below can only be measured by the agents.
const suite = gatewaySuite('agent-gates');
const model = servedModel('agent-gates');

const errorRate: AnalysisCheck = {
  name: 'errors',
  builtin: 'errorRate',
  source: 'Agents',
  max: 0.05,
  intervalSeconds: 5,
};
// The agents' buckets are 25% wide: a 400 ms candidate measures over 323 ms (its bucket, or the
// next), a healthy one a few ms; 300 ms leaves a loaded 2-core machine's slowest healthy answers
// room, and a 10 s interval puts about 100 requests of the canary's share in each evaluation.
const latencyP99: AnalysisCheck = {
  name: 'p99',
  builtin: 'latencyP99',
  source: 'Agents',
  max: 300,
  intervalSeconds: 10,
};
const timeoutMs = 3000;

const progressing = (e: MachineLearningEndpoint) => e.status?.conditions?.find((c) => c.type === 'Progressing');
const servicesOf = (e: MachineLearningEndpoint) =>
  (e.status?.traffic ?? []).filter((t) => t.version === e.status?.endpointConfigVersion).map((t) => t.service);

async function serveFirst(name: string, checks: AnalysisCheck[]): Promise<MachineLearningEndpoint> {
  await applyModel(suite.namespace, name, model(`acme/${name}:1`));
  await applyConfig(suite.namespace, name, { models: [{ model: name }] });
  await applyEndpoint(suite.namespace, name, {
    config: name,
    rollout: { strategy: 'Canary', canary: { percent: 20, bakeSeconds: 20 }, analysis: { checks }, drainSeconds: 5 },
  });
  const e = await waitForEndpoint(suite.namespace, name, 'InService', inService, 90_000);
  await waitForGateway(suite.host(name));
  return e;
}

describe('metric gates measured by the model agents, with no Prometheus', () => {
  it('promotes a healthy candidate on errorRate and latencyP99 from its agents: 0 failed requests', async () => {
    const v1 = await serveFirst('healthy', [errorRate, latencyP99]);
    const run = load(suite.host('healthy'), {
      requests: 8000,
      rate: 50,
      concurrency: 64,
      timeoutMs,
      maxDurationMs: 150_000,
    });
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 50 ? true : undefined));
      await applyModel(suite.namespace, 'healthy', model('acme/healthy:2'));
      const promoted = await waitForEndpoint(
        suite.namespace,
        'healthy',
        'the candidate promoted',
        (e) =>
          e.status?.rollout?.phase === 'Promoted' &&
          e.status.endpointConfigVersion !== v1.status!.endpointConfigVersion,
        120_000,
      );
      const promotedAt = run.elapsed();
      const records = promoted.status!.rollout!.analysis ?? [];
      process.stdout.write(`[agent gates] healthy candidate promoted: ${JSON.stringify(records)}\n`);
      // Both checks were measured (values, not "no data") and passed.
      expect(records).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ name: 'errors', result: 'Passed', value: expect.stringMatching(/^0/) }),
          expect.objectContaining({ name: 'p99', result: 'Passed', value: expect.stringMatching(/^\d/) }),
        ]),
      );
      expect(Number(records.find((r) => r.name === 'p99')!.value)).toBeLessThan(300);
      await untilElapsed(run, run.elapsed() + 3000);
      run.stop();
      const r = await run.done;
      printReport('a healthy candidate, promoted on the agents’ measures', r);
      expect(failedOf(run.samples)).toEqual([]);
      // Before the promotion both versions answered: the canary step took traffic, and was measured.
      const before = new Set(run.samples.filter((s) => s.end < promotedAt).map((s) => s.backend?.instance));
      for (const s of [...servicesOf(v1), ...servicesOf(promoted)]) expect(before).toContain(s);
    } finally {
      run.stop();
    }
  });

  it('rolls back a broken candidate (50% errors) on the error rate its agents counted; none fails after the rollback', async () => {
    const v1 = await serveFirst('broken', [errorRate]);
    const serving = servicesOf(v1);
    const run = load(suite.host('broken'), {
      requests: 6000,
      rate: 60,
      concurrency: 64,
      timeoutMs,
      maxDurationMs: 90_000,
    });
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 50 ? true : undefined));
      await applyModel(suite.namespace, 'broken', model('acme/broken:2', { DEMO_ERROR_RATE: '0.5' }));
      const rolledBack = await waitForEndpoint(
        suite.namespace,
        'broken',
        'rolled back',
        (e) => e.status?.rollout?.phase === 'RolledBack',
        60_000,
      );
      const rollbackAt = run.elapsed();
      await untilElapsed(run, rollbackAt + 8000);
      run.stop();
      const r = await run.done;
      printReport('a broken candidate, rolled back on its agents’ error rate', r);
      expect(rolledBack.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
      const condition = progressing(rolledBack)!;
      process.stdout.write(`[agent gates] broken candidate: ${condition.message}\n`);
      expect(condition).toMatchObject({ status: 'False', reason: 'AnalysisFailed' });
      // The agents saw about half of the candidate's answers fail: far above the 5% bound.
      const said = /check errors = (0\.\d+|1), outside its bound \(<= 0\.05\)/.exec(condition.message ?? '');
      expect(said, condition.message).not.toBeNull();
      expect(Number(said![1])).toBeGreaterThan(0.2);
      // Every failure is a 500 of the candidate; from the first error to the rollback, at most its
      // share (20%) of its error rate (50%) failed, within the 99.9% interval; none after the reload.
      const failed = failedOf(run.samples);
      expect(failed.length).toBeGreaterThan(0);
      expect(notCandidateErrors(failed, serving)).toEqual([]);
      const { problems } = rollbackProblems(run.samples, { rollbackAt, share: 0.2, errorRate: 0.5 });
      expect(problems).toEqual([]);
      expect(failed.every((s) => s.start <= rollbackAt + 3000)).toBe(true);
      const after = run.samples.filter((s) => s.start >= rollbackAt + 3000);
      expect(after.length).toBeGreaterThan(200);
      expect(after.filter((s) => !serving.includes(s.backend?.instance ?? ''))).toEqual([]);
    } finally {
      run.stop();
    }
  });

  it('rolls back a slow candidate (400 ms) on the p99 its agents measured, with 0 failed requests', async () => {
    const v1 = await serveFirst('slow', [latencyP99]);
    const serving = servicesOf(v1);
    const run = load(suite.host('slow'), {
      requests: 6000,
      rate: 50,
      concurrency: 128,
      timeoutMs,
      maxDurationMs: 90_000,
    });
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 50 ? true : undefined));
      await applyModel(suite.namespace, 'slow', model('acme/slow:2', { DEMO_LATENCY_MS: '400' }));
      const rolledBack = await waitForEndpoint(
        suite.namespace,
        'slow',
        'rolled back',
        (e) => e.status?.rollout?.phase === 'RolledBack',
        60_000,
      );
      const rollbackAt = run.elapsed();
      await untilElapsed(run, rollbackAt + 5000);
      run.stop();
      const r = await run.done;
      printReport('a slow candidate, rolled back on its agents’ p99', r);
      const condition = progressing(rolledBack)!;
      process.stdout.write(`[agent gates] slow candidate: ${condition.message}\n`);
      expect(rolledBack.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
      const said = /check p99 = (\d+(\.\d+)?), outside its bound \(<= 300\)/.exec(condition.message ?? '');
      expect(said, condition.message).not.toBeNull();
      // 400 ms answers fall in the bucket (323.1, 403.9] ms or, with the agent's own time, the next one.
      expect(Number(said![1])).toBeGreaterThan(300);
      expect(failedOf(run.samples)).toEqual([]);
      const after = run.samples.filter((s) => s.start >= rollbackAt + 3000);
      expect(after.length).toBeGreaterThan(50);
      expect(after.filter((s) => !serving.includes(s.backend?.instance ?? ''))).toEqual([]);
    } finally {
      run.stop();
    }
  });
});
