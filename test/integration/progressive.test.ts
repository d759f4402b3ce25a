// Progressive delivery under real load through the gateway (Traefik, Gateway API), with the metric
// gates measured by the cluster's real Prometheus from Traefik's own metrics: a healthy candidate
// promoted through Canary and Linear steps (the split of each step counted per backend), broken and
// slow candidates rolled back, Prometheus cut off during a bake, approval and rollback to history as
// spec changes, a controller killed mid-bake, the smoke test, the preview and the capacity check, and
// the chart's Grafana dashboard queried against the same Prometheus.
import { rmSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { binomialInterval, type LoadRun, type Sample } from '../../ci/traffic/load.ts';
import { rollbackProblems, type RollbackFigures } from '../../ci/traffic/figures.ts';
import { waitFor } from '../../ci/wait.ts';
import type {
  AnalysisCheck,
  MachineLearningEndpoint,
  MachineLearningEndpointRollout,
} from '../../controller/src/api/generated.ts';
import { resources } from '../../controller/src/kube/resources.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  getEndpoint,
  inService,
  k8s,
  list,
  runController,
  waitForEndpoint,
} from './ml.ts';
import { cuttablePathToPrometheus, query, type CuttablePath } from './prometheus.ts';
import {
  artifact,
  backendsOf,
  expectServed,
  installGatewayRelease,
  load,
  printReport,
  uninstallRelease,
  waitForGateway,
} from './traffic.ts';
import { servedModel } from './fixtures.ts';
import { failedOf, notCandidateErrors, untilElapsed } from './served.ts';

let namespace: string;
let capacityNamespace: string;
let release: Release;
let controller: ControllerProcess;
let prometheusPath: CuttablePath;
const controllerTarget = join(inject('prometheus').targetsDir, `controller-${process.pid}.json`);
const host = (name: string) => `${name}.${namespace}.models.example.com`;

/** Has Prometheus scrape the controller's metrics (for the dashboard's panels). */
function registerController(c: ControllerProcess): void {
  writeFileSync(
    controllerTarget,
    JSON.stringify([
      { targets: [`${inject('network').address}:${c.metricsPort}`], labels: { job: 'ml-operator-controller' } },
    ]),
  );
}

async function startController(): Promise<ControllerProcess> {
  const c = await runController([namespace, capacityNamespace], { release });
  registerController(c);
  return c;
}

beforeAll(async () => {
  namespace = await createNamespace(admin, 'progressive', { 'pod-security.kubernetes.io/enforce': 'restricted' });
  capacityNamespace = await createNamespace(admin, 'capacity', { 'pod-security.kubernetes.io/enforce': 'restricted' });
  prometheusPath = await cuttablePathToPrometheus();
  release = await installGatewayRelease([namespace, capacityNamespace], 'shared', [
    `controller.config.prometheus.url=${prometheusPath.url}`,
    'controller.config.prometheus.dataPlane=traefik',
  ]);
  controller = await startController();
});
afterAll(async () => {
  await controller?.stop();
  rmSync(controllerTarget, { force: true });
  await prometheusPath?.close();
  for (const ns of [namespace, capacityNamespace]) if (ns) await deleteNamespace(admin, ns);
  if (release) await uninstallRelease(release);
});

const model = servedModel('progressive');
const errorRate = (o: Partial<AnalysisCheck> = {}): AnalysisCheck => ({
  name: 'errors',
  builtin: 'errorRate',
  max: 0.05,
  intervalSeconds: 5,
  ...o,
});
// Traefik's latency histogram has buckets at 100, 300 and 1,200 ms, and its p99 is interpolated inside
// one: a bound of 200 ms fails as soon as 1% of requests take over 100 ms, which a loaded 2-core CI
// machine does to a healthy candidate; 300 ms fails when 1% take over 300 ms, as the slow one does.
const latencyP99 = (o: Partial<AnalysisCheck> = {}): AnalysisCheck => ({
  name: 'p99',
  builtin: 'latencyP99',
  max: 300,
  intervalSeconds: 5,
  ...o,
});
const progressing = (e: MachineLearningEndpoint) => e.status?.conditions?.find((c) => c.type === 'Progressing');
const servicesOf = (e: MachineLearningEndpoint, version: string) =>
  (e.status?.traffic ?? []).filter((t) => t.version === version).map((t) => t.service);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** What the endpoint's status said, and when (on the load run's clock), each time its rollout changed. */
interface Seen {
  at: number;
  version?: string;
  phase?: string;
  step?: number;
  weight?: number;
  reason?: string;
}

function track(name: string, run: LoadRun, timeoutMs: number): { seen: Seen[]; stop(): Promise<void> } {
  const seen: Seen[] = [];
  let stopped = false;
  const poll = async () => {
    const e = await getEndpoint(namespace, name);
    const r = e.status?.rollout;
    const now: Seen = {
      at: run.elapsed(),
      version: r?.version,
      phase: r?.phase,
      step: r?.step,
      weight: r?.weight,
      reason: progressing(e)?.reason,
    };
    const last = seen.at(-1);
    if (!last || (['version', 'phase', 'step', 'weight', 'reason'] as const).some((k) => last[k] !== now[k]))
      seen.push(now);
  };
  const done = (async () => {
    const deadline = Date.now() + timeoutMs;
    while (!stopped && Date.now() < deadline) {
      await poll();
      await delay(200);
    }
  })();
  return {
    seen,
    // One last look, so that what the test waited for is among the transitions.
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await done;
      await poll();
    },
  };
}

/**
 * The periods during which the route gave the version rolling out a given share, from the
 * transitions seen: from when status showed the step until it showed the next.
 */
function periods(seen: readonly Seen[], version: string): { weight: number; from: number; to: number }[] {
  const out: { weight: number; from: number; to: number }[] = [];
  for (const [i, s] of seen.entries()) {
    if (s.version !== version || !s.weight) continue;
    const next = seen.slice(i + 1).find((x) => x.version !== version || x.weight !== s.weight);
    const last = out.at(-1);
    if (last && last.weight === s.weight && last.to >= s.at) continue;
    out.push({ weight: s.weight, from: s.at, to: next?.at ?? Infinity });
  }
  return out;
}

/**
 * Asserts that the requests started inside a period (past the gateway's reload, up to the next
 * step) went to the new version's Services in the period's share, within the 99.9% binomial interval.
 */
function expectSplit(
  samples: readonly Sample[],
  period: { weight: number; from: number; to: number },
  newServices: string[],
  what: string,
): void {
  // Traefik applies a changed route within its 2 s reload throttle; the status is written right after the route.
  const window = samples.filter(
    (s) => s.start >= period.from + 3000 && s.start < period.to - 300 && s.backend?.instance,
  );
  const hits = window.filter((s) => newServices.includes(s.backend!.instance!)).length;
  const observed = hits / window.length;
  const [lo, hi] = binomialInterval(period.weight / 100, window.length);
  process.stdout.write(
    `[progressive] ${what}: step of ${period.weight}%: ${(observed * 100).toFixed(2)}% of ${window.length} requests to the new version, interval ${(lo * 100).toFixed(2)}..${(hi * 100).toFixed(2)}%\n`,
  );
  expect(window.length, `${what}: requests in the ${period.weight}% step`).toBeGreaterThan(150);
  expect(observed, `${what}: share in the ${period.weight}% step`).toBeGreaterThanOrEqual(Math.max(0, lo));
  expect(observed, `${what}: share in the ${period.weight}% step`).toBeLessThanOrEqual(Math.min(1, hi));
}

function printRollback(what: string, f: RollbackFigures | undefined): void {
  if (!f) return;
  process.stdout.write(
    `[progressive] ${what}: first error at ${seconds(f.firstError)}, rollback seen at ${seconds(f.rollbackAt)} (${seconds(f.rollbackAt - f.firstError)} later, bound 15 s); ` +
      `${f.failed} failed of ${f.sent} sent from the first error to the rollback (bound ${f.bound})\n`,
  );
}

/** Serves a first version of `name`, with the given rollout, and returns it. */
async function serveFirst(
  name: string,
  rollout: MachineLearningEndpointRollout,
  image = `acme/${name}:1`,
): Promise<MachineLearningEndpoint> {
  await applyModel(namespace, name, model(image));
  await applyConfig(namespace, name, { models: [{ model: name }] });
  await applyEndpoint(namespace, name, { config: name, rollout });
  const e = await waitForEndpoint(namespace, name, 'InService', inService, 90_000);
  await waitForGateway(host(name));
  return e;
}

describe('Canary and Linear under load, with metric gates on Traefik metrics in Prometheus', () => {
  it('promotes a healthy candidate through Canary, then through 4 Linear steps: each split within its 99.9% interval, 0 failed requests', async () => {
    const checks = [errorRate(), latencyP99()];
    const v1 = await serveFirst('healthy', {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 15 },
      analysis: { checks },
      drainSeconds: 5,
    });
    const run = load(host('healthy'), { requests: 15_000, rate: 60, concurrency: 128, maxDurationMs: 170_000 });
    const tracker = track('healthy', run, 170_000);
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 100 ? true : undefined));
      await applyModel(namespace, 'healthy', model('acme/healthy:2'));
      const inProgress = await waitForEndpoint(
        namespace,
        'healthy',
        'the canary step',
        (e) => e.status?.rollout?.phase === 'Progressing' && e.status.rollout.weight === 20,
        60_000,
      );
      process.stdout.write(
        `[progressive] a rollout in progress: ${JSON.stringify({ state: inProgress.status!.state, rollout: inProgress.status!.rollout, traffic: inProgress.status!.traffic, progressing: progressing(inProgress) })}\n`,
      );
      const v2 = await waitForEndpoint(
        namespace,
        'healthy',
        'v2 promoted',
        (e) =>
          inService(e) &&
          e.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion &&
          e.status!.rollout?.phase === 'Promoted',
        90_000,
      );
      // The gates measured the canary from Traefik's metrics: every check passed with a value.
      expect(v2.status!.rollout!.analysis!.map((a) => [a.name, a.result, a.value !== undefined])).toEqual([
        ['errors', 'Passed', true],
        ['p99', 'Passed', true],
      ]);
      await applyEndpoint(namespace, 'healthy', {
        config: 'healthy',
        rollout: {
          strategy: 'Linear',
          linear: { stepPercent: 25, intervalSeconds: 10 },
          analysis: { checks },
          drainSeconds: 5,
        },
      });
      await waitForEndpoint(
        namespace,
        'healthy',
        'the new spec observed',
        (e) => e.status?.observedGeneration === e.metadata?.generation,
      );
      await applyModel(namespace, 'healthy', model('acme/healthy:3'));
      const v3 = await waitForEndpoint(
        namespace,
        'healthy',
        'v3 promoted',
        (e) =>
          inService(e) &&
          e.status!.endpointConfigVersion !== v2.status!.endpointConfigVersion &&
          e.status!.rollout?.phase === 'Promoted',
        120_000,
      );
      await untilElapsed(run, run.elapsed() + 8000);
      run.stop();
      await tracker.stop();
      const r = await run.done;
      printReport('Canary then Linear, healthy candidates', r);
      expectServed(run, { backends: backendsOf(v1, inProgress, v2, v3), namespace });

      const canary = periods(tracker.seen, v2.status!.endpointConfigVersion!);
      expect(canary.map((p) => p.weight)).toEqual([20, 100]);
      expectSplit(run.samples, canary[0], servicesOf(v2, v2.status!.endpointConfigVersion!), 'Canary');
      const linear = periods(tracker.seen, v3.status!.endpointConfigVersion!);
      expect(linear.map((p) => p.weight)).toEqual([25, 50, 75, 100]);
      for (const p of linear.slice(0, 3))
        expectSplit(run.samples, p, servicesOf(v3, v3.status!.endpointConfigVersion!), 'Linear');
      // Promoted: past the gateway's reload, every request went to the new version.
      expectSplit(
        run.samples,
        { ...linear[3], to: run.elapsed() },
        servicesOf(v3, v3.status!.endpointConfigVersion!),
        'Linear, promoted',
      );
      expect(v3.status!.rollout!.history!.map((h) => h.weight)).toEqual([25, 50, 75, 100]);
    } finally {
      run.stop();
      await tracker.stop();
    }
  });

  it('rolls a broken candidate (50% errors) back automatically: failures bounded by its share, none after the rollback', async () => {
    const v1 = await serveFirst('risky', {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 120 },
      analysis: { checks: [errorRate()] },
      drainSeconds: 5,
    });
    const servingServices = servicesOf(v1, v1.status!.endpointConfigVersion!);
    const run = load(host('risky'), { requests: 10_000, rate: 60, concurrency: 128, maxDurationMs: 90_000 });
    const tracker = track('risky', run, 90_000);
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 100 ? true : undefined));
      await applyModel(namespace, 'risky', model('acme/risky:2', { DEMO_ERROR_RATE: '0.5' }));
      const rolledBack = await waitForEndpoint(
        namespace,
        'risky',
        'rolled back',
        (e) => e.status?.rollout?.phase === 'RolledBack',
        60_000,
      );
      const rollbackAt = run.elapsed();
      await untilElapsed(run, rollbackAt + 8000);
      run.stop();
      await tracker.stop();
      const r = await run.done;
      printReport('a broken candidate, rolled back', r);
      process.stdout.write(
        `[progressive] a rolled-back rollout: ${JSON.stringify({ state: rolledBack.status!.state, endpointConfigVersion: rolledBack.status!.endpointConfigVersion, rollout: rolledBack.status!.rollout, progressing: progressing(rolledBack) })}\n`,
      );

      const candidate = rolledBack.status!.rollout!.version!;
      expect(rolledBack.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
      expect(progressing(rolledBack)).toMatchObject({
        status: 'False',
        reason: 'AnalysisFailed',
        message: expect.stringMatching(/check errors = 0\.\d+, outside its bound \(<= 0\.05\)/),
      });
      const failed = failedOf(run.samples);
      // Every failure is an answer of the candidate: none from the serving version, none from the gateway.
      expect(failed.length).toBeGreaterThan(0);
      expect(notCandidateErrors(failed, servingServices)).toEqual([]);
      const candidateServices = [...new Set(failed.map((s) => s.backend!.instance!))];
      const rollbackSeen = tracker.seen.find((s) => s.phase === 'RolledBack')!.at;
      // Rolled back within 15 s of the first failed request; and from then to the rollback, at most
      // the candidate's share (20%) of its error rate (50%) failed, within the 99.9% interval.
      const { figures, problems } = rollbackProblems(run.samples, {
        rollbackAt: rollbackSeen,
        share: 0.2,
        errorRate: 0.5,
      });
      printRollback('broken Canary candidate', figures);
      expect(problems).toEqual([]);
      // The gateway applies the rollback within its reload: no failure after that.
      expect(failed.every((s) => s.start <= rollbackSeen + 3000)).toBe(true);
      // After the rollback (and the gateway's reload), not one request reaches the candidate.
      const after = run.samples.filter((s) => s.start >= rollbackSeen + 3000);
      expect(after.length).toBeGreaterThan(200);
      expect(after.filter((s) => s.backend?.instance && !servingServices.includes(s.backend.instance))).toEqual([]);

      // An Event names the check, the value and the bound; the snapshots stay; the workloads scale to zero.
      const events = await admin
        .makeApiClient(k8s.CoreV1Api)
        .listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.name=risky,reason=AnalysisFailed' });
      expect(events.items.map((e) => e.message)).toEqual([
        expect.stringMatching(
          /^check errors = 0\.\d+, outside its bound \(<= 0\.05\) 1 time\(s\), more than its failureLimit 0; all traffic is on version \w+\. /,
        ),
      ]);
      expect(
        (await list(resources.endpointConfig, namespace)).map((c) => c.metadata.labels?.['ml-operator.dev/version']),
      ).toContain(candidate);
      await waitFor('the candidate scaled to zero after its drain', 30_000, async () => {
        const ds = (await list(resources.deployment, namespace)).filter((d) =>
          candidateServices.includes(d.metadata.name),
        );
        return ds.every((d) => (d.spec as { replicas: number }).replicas === 0) ? true : undefined;
      });
    } finally {
      run.stop();
      await tracker.stop();
    }
  });

  it('rolls a broken Linear candidate (50% errors) back at its first step, through Traefik: within 15 s, failures bounded by the step', async () => {
    const v1 = await serveFirst('risky-linear', {
      strategy: 'Linear',
      linear: { stepPercent: 25, intervalSeconds: 120 },
      analysis: { checks: [errorRate()] },
      drainSeconds: 5,
    });
    const servingServices = servicesOf(v1, v1.status!.endpointConfigVersion!);
    const run = load(host('risky-linear'), { requests: 10_000, rate: 60, concurrency: 128, maxDurationMs: 90_000 });
    const tracker = track('risky-linear', run, 90_000);
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 100 ? true : undefined));
      await applyModel(namespace, 'risky-linear', model('acme/risky-linear:2', { DEMO_ERROR_RATE: '0.5' }));
      const rolledBack = await waitForEndpoint(
        namespace,
        'risky-linear',
        'rolled back',
        (e) => e.status?.rollout?.phase === 'RolledBack',
        60_000,
      );
      await untilElapsed(run, run.elapsed() + 8000);
      run.stop();
      await tracker.stop();
      printReport('a broken Linear candidate, rolled back', await run.done);
      expect(rolledBack.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
      expect(progressing(rolledBack)).toMatchObject({ status: 'False', reason: 'AnalysisFailed' });
      // It never went past its first step.
      expect(
        tracker.seen.filter((x) => x.version === rolledBack.status!.rollout!.version && x.weight).map((x) => x.weight),
      ).toEqual([25]);
      const failed = failedOf(run.samples);
      expect(notCandidateErrors(failed, servingServices)).toEqual([]);
      const rollbackSeen = tracker.seen.find((x) => x.phase === 'RolledBack')!.at;
      const { figures, problems } = rollbackProblems(run.samples, {
        rollbackAt: rollbackSeen,
        share: 0.25,
        errorRate: 0.5,
      });
      printRollback('broken Linear candidate', figures);
      expect(problems).toEqual([]);
      expect(failed.every((s) => s.start <= rollbackSeen + 3000)).toBe(true);
      const after = run.samples.filter((s) => s.start >= rollbackSeen + 3000);
      expect(after.length).toBeGreaterThan(200);
      expect(after.filter((s) => s.backend?.instance && !servingServices.includes(s.backend.instance))).toEqual([]);
    } finally {
      run.stop();
      await tracker.stop();
    }
  });

  it('rolls a slow candidate back on latencyP99, with 0 failed requests', async () => {
    const serving = await serveFirst('slow', {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 120 },
      analysis: { checks: [latencyP99()] },
      drainSeconds: 5,
    });
    const run = load(host('slow'), { requests: 10_000, rate: 60, concurrency: 128, maxDurationMs: 90_000 });
    try {
      await waitFor('load before the change', 10_000, async () => (run.samples.length > 100 ? true : undefined));
      await applyModel(namespace, 'slow', model('acme/slow:2', { DEMO_LATENCY_MS: '400' }));
      const started = await waitForEndpoint(
        namespace,
        'slow',
        'the slow canary step',
        (e) => e.status?.rollout?.phase === 'Progressing' && e.status.rollout.weight === 20,
        60_000,
      );
      const stepAt = Date.parse(started.status!.rollout!.stepStartedAt!);
      const rolledBack = await waitForEndpoint(
        namespace,
        'slow',
        'rolled back on latency',
        (e) => e.status?.rollout?.phase === 'RolledBack',
        60_000,
      );
      run.stop();
      const r = await run.done;
      printReport('a slow candidate, rolled back', r);
      process.stdout.write(
        `[progressive] slow candidate: rolled back ${seconds(Date.now() - stepAt)} after its step began: ${progressing(rolledBack)!.message}\n`,
      );
      expect(progressing(rolledBack)).toMatchObject({
        reason: 'AnalysisFailed',
        message: expect.stringMatching(/check p99 = \d+(\.\d+)?, outside its bound \(<= 300\)/),
      });
      expect(rolledBack.status!.endpointConfigVersion).toBe(serving.status!.endpointConfigVersion);
      // The candidate answers in 400 ms, within the load's 1 s bound: the gate, not that bound, caught it.
      expectServed(run, { backends: backendsOf(serving, started), namespace });
    } finally {
      run.stop();
    }
  });

  it('holds a step while Prometheus is unreachable (inconclusive), then fails after the limit', async () => {
    const checks = [errorRate({ intervalSeconds: 5, inconclusiveLimit: 2 })];
    const serving = await serveFirst('blind', {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 5 },
      analysis: { checks },
      drainSeconds: 5,
    });
    const run = load(host('blind'), { requests: 6000, rate: 40, concurrency: 128, maxDurationMs: 90_000 });
    const tracker = track('blind', run, 90_000);
    try {
      prometheusPath.cut();
      await applyModel(namespace, 'blind', model('acme/blind:2'));
      const held = await waitForEndpoint(
        namespace,
        'blind',
        'the baked step held for its checks',
        (e) => progressing(e)?.reason === 'AnalysisPending',
        60_000,
      );
      expect(held.status!.rollout).toMatchObject({ phase: 'Progressing', weight: 20 });
      expect(progressing(held)!.message).toMatch(/the query failed/);
      const failed = await waitForEndpoint(
        namespace,
        'blind',
        'failed after the limit',
        (e) => e.status?.rollout?.phase === 'RolledBack',
        60_000,
      );
      run.stop();
      await tracker.stop();
      const r = await run.done;
      printReport('Prometheus unreachable during the bake', r);
      expect(progressing(failed)).toMatchObject({
        reason: 'AnalysisFailed',
        message: expect.stringMatching(/errors was inconclusive 3 times in a row, more than its inconclusiveLimit 2/),
      });
      // The step held past its bake: the rollback came well after the 5 s bake ended.
      const step = tracker.seen.find((s) => s.weight === 20)!;
      const end = tracker.seen.find((s) => s.phase === 'RolledBack')!;
      process.stdout.write(
        `[progressive] Prometheus unreachable: the 20% step held for ${seconds(end.at - step.at)} (bake 5 s), then rolled back\n`,
      );
      expect(end.at - step.at).toBeGreaterThan(9000);
      expectServed(run, { backends: backendsOf(serving, held), namespace });
    } finally {
      prometheusPath.restore();
      run.stop();
      await tracker.stop();
    }
  });
});

describe('approval, rollback to history and a restarted controller', () => {
  it('holds for approval, promotes once spec.rollout.approvedVersion names the version, and rolls back to history by spec.serveVersion: 0 failed requests', async () => {
    const rollout: MachineLearningEndpointRollout = {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 5 },
      approval: { beforePromotion: true },
      drainSeconds: 5,
    };
    const v1 = await serveFirst('gated', rollout);
    const v1Version = v1.status!.endpointConfigVersion!;
    const run = load(host('gated'), { requests: 20_000, rate: 50, concurrency: 128, maxDurationMs: 150_000 });
    try {
      await applyModel(namespace, 'gated', model('acme/gated:2'));
      const paused = await waitForEndpoint(
        namespace,
        'gated',
        'waiting for approval',
        (e) => progressing(e)?.reason === 'WaitingForApproval',
        60_000,
      );
      const v2Version = paused.status!.rollout!.version!;
      // It holds: for 10 s, still paused at 20%.
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        const e = await getEndpoint(namespace, 'gated');
        expect(e.status!.rollout).toMatchObject({ phase: 'Paused', weight: 20 });
        await delay(500);
      }
      await applyEndpoint(namespace, 'gated', { config: 'gated', rollout: { ...rollout, approvedVersion: v2Version } });
      const v2 = await waitForEndpoint(
        namespace,
        'gated',
        'approved and promoted',
        (e) => inService(e) && e.status!.endpointConfigVersion === v2Version,
        60_000,
      );
      expect(v2.status!.history).toContain(v1Version);
      // Rollback to the version in history, with the same gate (approved in the same change).
      await applyEndpoint(namespace, 'gated', {
        config: 'gated',
        serveVersion: v1Version,
        rollout: { ...rollout, approvedVersion: v1Version },
      });
      const back = await waitForEndpoint(
        namespace,
        'gated',
        'back on the first version',
        (e) => inService(e) && e.status!.endpointConfigVersion === v1Version,
        90_000,
      );
      expect(back.status!.rollout!.history!.map((h) => h.weight)).toEqual([20, 100]);
      expect(servicesOf(back, v1Version)).toEqual(servicesOf(v1, v1Version));
      await untilElapsed(run, run.elapsed() + 5000);
      run.stop();
      const r = await run.done;
      printReport('approval, then rollback to history', r);
      expectServed(run, { backends: backendsOf(v1, paused, v2, back), namespace });
      const last = run.samples.filter((s) => s.start > run.elapsed() - 2000 && s.backend?.instance);
      expect(new Set(last.map((s) => s.backend!.instance))).toEqual(new Set(servicesOf(v1, v1Version)));
    } finally {
      run.stop();
    }
  });

  it('resumes the same step with the remaining bake after the controller is killed mid-bake', async () => {
    const serving = await serveFirst('resume', {
      strategy: 'Canary',
      canary: { percent: 20, bakeSeconds: 30 },
      drainSeconds: 5,
    });
    const run = load(host('resume'), { requests: 10_000, rate: 40, concurrency: 128, maxDurationMs: 120_000 });
    try {
      await applyModel(namespace, 'resume', model('acme/resume:2'));
      const step = await waitForEndpoint(
        namespace,
        'resume',
        'the canary step',
        (e) => e.status?.rollout?.phase === 'Progressing' && e.status.rollout.weight === 20,
        60_000,
      );
      const startedAt = Date.parse(step.status!.rollout!.stepStartedAt!);
      await waitFor('10 s into the bake', 20_000, async () => (Date.now() >= startedAt + 10_000 ? true : undefined));
      await controller.kill();
      controller = await startController();
      const promoted = await waitForEndpoint(
        namespace,
        'resume',
        'promoted',
        (e) => e.status?.rollout?.phase === 'Promoted' && e.status.rollout.version === step.status!.rollout!.version,
        90_000,
      );
      run.stop();
      const r = await run.done;
      printReport('controller killed mid-bake', r);
      const [first, promotion] = promoted.status!.rollout!.history!;
      expect(Date.parse(first.startedAt)).toBe(startedAt);
      const bake = Date.parse(promotion.startedAt) - startedAt;
      process.stdout.write(
        `[progressive] killed 10 s into a 30 s bake: promoted ${seconds(bake)} after the step began\n`,
      );
      expect(bake).toBeGreaterThanOrEqual(30_000);
      expect(bake).toBeLessThan(45_000);
      expectServed(run, { backends: backendsOf(serving, step, promoted), namespace });
    } finally {
      run.stop();
    }
  });
});

describe('the smoke test', () => {
  it('keeps a candidate that fails it from taking any request, and lets one that passes proceed', async () => {
    await admin.makeApiClient(k8s.CoreV1Api).createNamespacedConfigMap({
      namespace,
      body: {
        metadata: { name: 'smoke-requests' },
        data: {
          'requests.json': JSON.stringify([
            { method: 'POST', path: '/predict', body: { passenger: 1 }, expectedStatus: 200, jsonPath: 'pod' },
          ]),
        },
      },
    });
    const v1 = await serveFirst('smoke', { smokeTest: { configMap: 'smoke-requests' }, drainSeconds: 5 });
    const servingServices = servicesOf(v1, v1.status!.endpointConfigVersion!);
    const run = load(host('smoke'), { requests: 10_000, rate: 40, concurrency: 128, maxDurationMs: 120_000 });
    try {
      await applyModel(namespace, 'smoke', model('acme/smoke:2', { DEMO_ERROR_RATE: '1' }));
      const failed = await waitForEndpoint(
        namespace,
        'smoke',
        'SmokeTestFailed',
        (e) => progressing(e)?.reason === 'SmokeTestFailed',
        60_000,
      );
      expect(progressing(failed)!.message).toMatch(/POST \/predict to \S+ answered 500, expected 200/);
      expect(failed.status!.rollout!.smokeTest).toMatch(/^Failed: /);
      const failedAt = run.elapsed();
      await untilElapsed(run, failedAt + 3000);
      expect(run.samples.filter((s) => s.backend?.instance && !servingServices.includes(s.backend.instance))).toEqual(
        [],
      );
      await applyModel(namespace, 'smoke', model('acme/smoke:3'));
      const passed = await waitForEndpoint(
        namespace,
        'smoke',
        'the next candidate promoted',
        (e) => inService(e) && e.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion,
        90_000,
      );
      expect(passed.status!.rollout!.smokeTest).toMatch(/^Passed: 1 request\(s\) answered as expected/);
      run.stop();
      const r = await run.done;
      printReport('smoke test failed, then passed', r);
      // The candidate that failed its smoke test is no backend here: an answer of its would be caught.
      expectServed(run, { backends: backendsOf(v1, passed), namespace });
    } finally {
      run.stop();
    }
  });
});

describe('preview and capacity', () => {
  const capacityModel = (image: string) => ({ image, artifact: artifact('progressive'), readinessPath: '/healthz' });
  const deploymentsOf = async () =>
    (await list(resources.deployment, capacityNamespace)).map((d) => d.metadata.name).sort();

  it('previews the plan with dryRun and creates nothing; says InsufficientCapacity against a quota and against the nodes, before anything is created', async () => {
    const linear: MachineLearningEndpointRollout = {
      strategy: 'Linear',
      linear: { stepPercent: 50, intervalSeconds: 30 },
      progressDeadlineSeconds: 120,
      drainSeconds: 2,
    };
    await applyModel(capacityNamespace, 'plan', capacityModel('acme/plan:1'));
    await applyConfig(capacityNamespace, 'plan', { models: [{ model: 'plan', cpus: '100m', memory: '64Mi' }] });
    await applyEndpoint(capacityNamespace, 'plan', { config: 'plan', rollout: linear });
    const v1 = await waitForEndpoint(capacityNamespace, 'plan', 'InService', inService, 90_000);
    const before = await deploymentsOf();

    // A dry run: the plan in status, nothing created.
    await applyEndpoint(capacityNamespace, 'plan', { config: 'plan', rollout: { ...linear, dryRun: true } });
    await applyConfig(capacityNamespace, 'plan', {
      models: [{ model: 'plan', instances: 2, cpus: '250m', memory: '128Mi' }],
    });
    await applyModel(capacityNamespace, 'plan', capacityModel('acme/plan:2'));
    const planned = await waitForEndpoint(
      capacityNamespace,
      'plan',
      'DryRun of the new image',
      (e) => progressing(e)?.reason === 'DryRun' && e.status?.preview?.replicas === 2,
    );
    process.stdout.write(
      `[progressive] a previewed rollout: ${JSON.stringify({ preview: planned.status!.preview, rollout: planned.status!.rollout, progressing: progressing(planned) })}\n`,
    );
    expect(planned.status!.preview).toEqual({
      version: planned.status!.rollout!.version,
      steps: [
        { weight: 50, seconds: 30 },
        { weight: 100, seconds: 0 },
      ],
      replicas: 2,
      cpus: '0.5',
      memory: '256Mi',
      gpus: 0,
      worstCaseSeconds: 150,
    });
    expect(planned.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
    expect(await deploymentsOf()).toEqual(before);

    // A quota with room for one more pod, where the new version needs two.
    const core = admin.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedResourceQuota({
      namespace: capacityNamespace,
      body: { metadata: { name: 'pods' }, spec: { hard: { pods: '2' } } },
    });
    await waitFor('the quota to count the pods', 30_000, async () =>
      (await core.readNamespacedResourceQuota({ name: 'pods', namespace: capacityNamespace })).status?.used?.pods ===
      '1'
        ? true
        : undefined,
    );
    await applyEndpoint(capacityNamespace, 'plan', { config: 'plan', rollout: linear });
    const quota = await waitForEndpoint(
      capacityNamespace,
      'plan',
      'InsufficientCapacity (quota)',
      (e) => progressing(e)?.reason === 'InsufficientCapacity',
    );
    expect(progressing(quota)!.message).toMatch(
      new RegExp(
        `ResourceQuota ${capacityNamespace}/pods leaves 1 of pods, and the new version needs 2 beside the serving one`,
      ),
    );
    expect(await deploymentsOf()).toEqual(before);

    // Nodes: one replica, which the quota has room for, but no node can hold.
    await applyConfig(capacityNamespace, 'plan', {
      models: [{ model: 'plan', instances: 1, cpus: '1000', memory: '128Mi' }],
    });
    const nodes = await waitForEndpoint(
      capacityNamespace,
      'plan',
      'InsufficientCapacity (nodes)',
      (e) => progressing(e)?.reason === 'InsufficientCapacity' && /no node can hold/.test(progressing(e)!.message),
    );
    expect(progressing(nodes)!.message).toMatch(/no node can hold a replica of plan \(1000 CPUs, 128Mi memory\)/);
    expect(await deploymentsOf()).toEqual(before);
    expect(nodes.status!.state).toBe('InService');
    await core.deleteNamespacedResourceQuota({ name: 'pods', namespace: capacityNamespace });
  });
});

describe('the Grafana dashboard of the chart', () => {
  it('runs every query of every panel against Prometheus, and shows the traffic per version from Traefik and the controller', async () => {
    const dashboard = JSON.parse(
      readFileSync(new URL('../../charts/controller/dashboards/ml-operator.json', import.meta.url), 'utf8'),
    ) as { panels: { title: string; targets: { refId: string; expr: string; legendFormat: string }[] }[] };
    const e = await getEndpoint(namespace, 'healthy');
    const fill = (expr: string) =>
      expr
        .replaceAll('$namespace', namespace)
        .replaceAll('$endpoint', 'healthy')
        .replaceAll('$__rate_interval', '1m')
        .replaceAll('$__range', '1h');
    await waitFor('Prometheus to scrape the controller', 30_000, async () =>
      (await query(`ml_operator_route_weight_percent{namespace="${namespace}",endpoint="healthy"}`)).length > 0
        ? true
        : undefined,
    );
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) {
        const result = await query(fill(t.expr));
        process.stdout.write(`[dashboard] ${panel.title} (${t.legendFormat}): ${result.length} series\n`);
        // The Traefik and the controller's series exist here; Istio's do not (no Envoy), but the query runs.
        if (!t.legendFormat.includes('(Istio)') && panel.title !== 'Rollbacks' && panel.title !== 'Metric gates') {
          expect(result.length, `${panel.title}: ${t.legendFormat}`).toBeGreaterThan(0);
        }
      }
    }
    const split = await query(
      fill(dashboard.panels.find((p) => p.title === 'Traffic split (route weights)')!.targets[0].expr),
    );
    expect(split.map((s) => [s.metric.version, Number(s.value[1])])).toEqual([[e.status!.endpointConfigVersion, 100]]);
    const rps = await query(
      fill(
        dashboard.panels
          .find((p) => p.title === 'Requests per second, by version')!
          .targets.find((t) => t.legendFormat.includes('Traefik'))!.expr,
      ),
    );
    expect(rps.map((s) => s.metric.version)).toEqual([e.status!.endpointConfigVersion]);
  });
});
