// Shadows judged by what they predict, with real scikit-learn models on the local cluster's real node
// (model agents in real containers, cluster DNS, requests through the gateway): the agreement an
// endpoint reports for a good and a deliberately bad candidate equals the one the image's build
// computed offline on the same 150 iris rows; a shadow test stops the bad candidate before its end,
// which never answers a client; a passed test promotes the good one through a Canary with 0 failed
// requests; and the agreement gate rolls a Canary of the bad one back, naming the agreement.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { log } from '../../ci/log.ts';
import { describeReport } from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import type { ShadowEntry } from '../../controller/src/api/generated.ts';
import { expectServed } from './served.ts';
import { compare, instanceOf, onNode, shadow, startShadowLab, type ShadowLab } from './shadow-lab.ts';

let lab: ShadowLab;
const bad = 'iris-permuted-1.0.0';

beforeAll(async () => {
  lab = await startShadowLab();
  await lab.journey.applyModel('iris-1', lab.journey.irisModel(lab.journey.artifacts['iris-1.0.0']));
  await lab.journey.applyModel('iris-2', lab.journey.irisModel(lab.journey.artifacts['iris-2.0.0']));
  await lab.journey.applyModel('iris-bad', lab.journey.irisModel(lab.journey.artifacts[bad]));
}, 1_500_000);

afterAll(async () => {
  await lab?.stop();
});

/** The count of agreeing predictions a comparison's (rounded) agreement stands for. */
const agreeing = (c: NonNullable<ShadowEntry['comparison']>) => Math.round((c.agreement ?? 0) * (c.predictions ?? 0));

describe('shadows judged by their predictions, on the real node', () => {
  it('reports, through the gateway, the agreement computed offline: of a good candidate and of a bad one', async () => {
    const { journey, offline, endpoint, until, firstAnswer, applyEndpoint, rowLoad } = lab;
    await journey.applyConfig('agree', {
      models: [
        onNode('iris-1'),
        onNode('iris-2', { shadow: { percent: 100, compare } }),
        onNode('iris-bad', { shadow: { percent: 100, compare } }),
      ],
    });
    await applyEndpoint('agree');
    const ready = await until('agree', 'to be InService with both shadows mirrored', 300_000, (e) =>
      e.status?.state === 'InService' && e.status.shadows?.length === 2 && e.status.shadows.every((s) => s.mirrored)
        ? e
        : undefined,
    );
    const serving = ready.status!.traffic!.map((t) => t.service);
    await firstAnswer('agree');
    // The agents mirror once their pods' config.json says so (a mounted ConfigMap, refreshed by the
    // kubelet): a prediction a second until both shadows have compared one. The rows are counted
    // from there.
    await waitFor(
      'the serving agents to mirror to both shadows',
      120_000,
      async () => {
        await journey.predictions('agree', { requests: 1, maxDurationMs: 10_000, concurrency: 1 }).done;
        const e = await endpoint('agree');
        return ['iris-2', 'iris-bad'].every((v) => (shadow(e, v)?.comparison?.compared ?? 0) > 0) || undefined;
      },
      async () => JSON.stringify((await endpoint('agree')).status?.shadows, null, 1),
    );
    // The baseline, once the figures have stood still for longer than the controller's 10 s poll of
    // the agents: every request before it is counted.
    let last = '';
    let since = Date.now();
    const before = await waitFor('the comparisons to settle after the warm-up', 60_000, async () => {
      const e = await endpoint('agree');
      const c = ['iris-2', 'iris-bad'].map((v) => shadow(e, v)!.comparison!);
      const key = JSON.stringify(c.map((x) => [x.requests, x.predictions, x.agreement]));
      if (key !== last) {
        last = key;
        since = Date.now();
        return undefined;
      }
      return Date.now() - since >= 11_000 ? c : undefined;
    });
    const run = rowLoad('agree', { requests: 150, rate: 25, maxDurationMs: 60_000 });
    log(`shadow verdicts: 150 iris rows to agree: ${describeReport(await run.done)}`);
    // Every client was answered by the serving model, never by a shadow, and none waited for a
    // shadow (a copy's timeout is 10 s): each within a second of what it asked for.
    expectServed(run, { backends: serving });
    const done = await until('agree', 'to have compared every row with each shadow', 60_000, (e) => {
      const s = ['iris-2', 'iris-bad'].map((v) => shadow(e, v)?.comparison);
      return s.every(
        (c, i) => c && c.requests + (c.dropped ?? 0) >= before[i].requests + (before[i].dropped ?? 0) + 150,
      )
        ? s
        : undefined;
    });
    for (const [i, name] of ['iris-2.0.0', bad].entries()) {
      const c = done[i]!;
      const b = before[i];
      const expected = offline[`iris-1.0.0|${name}`];
      const measured = (agreeing(c) - agreeing(b)) / ((c.predictions ?? 0) - (b.predictions ?? 0));
      log(
        `shadow verdicts: iris-1.0.0 against ${name} over the 150 rows: agreement ${measured} (offline ${expected}); since the start ${JSON.stringify(c)}`,
      );
      // Rows the agents dropped (their in-flight cap, a back-off from refused connections) are counted;
      // none is expected at this rate.
      const dropped = (c.dropped ?? 0) - (b.dropped ?? 0);
      expect(c.requests - b.requests + dropped).toBe(150);
      expect(c.compared - b.compared + dropped).toBe(150);
      expect((c.predictions ?? 0) - (b.predictions ?? 0) + dropped).toBe(150);
      // Exactly the count of rows agreeing offline, within the rows dropped.
      expect(Math.abs(agreeing(c) - agreeing(b) - Math.round(expected * 150))).toBeLessThanOrEqual(dropped);
      expect(c.serving?.errorRate).toBe(0);
      expect(c.shadow?.errorRate).toBe(0);
    }
    expect(offline[`iris-1.0.0|${bad}`]).toBeLessThan(0.6);
  }, 600_000);

  it('stops a bad candidate before its test ends, and promotes a good one through a Canary, with 0 failed requests', async () => {
    const { journey, core, until, firstAnswer, applyEndpoint, rowLoad } = lab;
    const test = (onPass: 'Promote' | 'Report', durationSeconds: number) => ({
      durationSeconds,
      minCompared: 100,
      criteria: { agreement: 0.9 },
      onPass,
      onFail: 'Stop' as const,
    });
    await journey.applyConfig('stopped', {
      models: [onNode('iris-1'), onNode('iris-bad', { shadow: { percent: 100, compare, test: test('Report', 180) } })],
    });
    await journey.applyConfig('promoted', {
      models: [onNode('iris-1'), onNode('iris-2', { shadow: { percent: 100, compare, test: test('Promote', 60) } })],
    });
    await applyEndpoint('stopped');
    await applyEndpoint('promoted', { strategy: 'Canary', canary: { percent: 20, bakeSeconds: 15 }, drainSeconds: 5 });
    const stoppedReady = await until('stopped', 'to be InService with its shadow mirrored', 300_000, (e) =>
      e.status?.state === 'InService' && shadow(e, 'iris-bad')?.mirrored ? e : undefined,
    );
    const promotedReady = await until('promoted', 'to be InService with its shadow mirrored', 300_000, (e) =>
      e.status?.state === 'InService' && shadow(e, 'iris-2')?.mirrored ? e : undefined,
    );
    const badInstance = shadow(stoppedReady, 'iris-bad')!.service;
    const tested = promotedReady.status!.endpointConfigVersion!;
    const candidate = shadow(promotedReady, 'iris-2')!.service;
    const servingBefore = promotedReady.status!.traffic!.map((t) => t.service);

    await firstAnswer('stopped');
    await firstAnswer('promoted');
    const started = Date.now();
    const stoppedRun = rowLoad('stopped', { requests: 1500, rate: 10, maxDurationMs: 150_000 });
    const promotedRun = rowLoad('promoted', { requests: 2000, rate: 10, maxDurationMs: 200_000 });

    // The bad candidate: failed early, beyond doubt, and stopped.
    const verdict = await until('stopped', 'to fail its shadow test', 120_000, (e) =>
      shadow(e, 'iris-bad')?.test?.phase === 'Failed' ? e : undefined,
    );
    const failedAfter = Date.now() - started;
    const t = shadow(verdict, 'iris-bad')!.test!;
    log(`shadow verdicts: the bad candidate's test after ${(failedAfter / 1000).toFixed(1)}s: ${JSON.stringify(t)}`);
    expect(t).toMatchObject({ reason: 'AgreementTooLow', action: 'Stop' });
    expect(t.agreement!).toBeLessThan(0.6);
    expect(t.compared!).toBeGreaterThanOrEqual(100);
    // Before the end of its 180 s.
    expect(Date.parse(t.decidedAt!) - Date.parse(t.startedAt!)).toBeLessThan(180_000);
    const condition = verdict.status!.conditions!.find((c) => c.type === 'ShadowTested')!;
    expect(condition).toMatchObject({ status: 'False', reason: 'AgreementTooLow' });
    expect(condition.message).toContain(`< 0.9`);
    expect(condition.message).toContain(`agreement ${Number(t.agreement!.toFixed(4))}`);
    const events = await core.listNamespacedEvent({ namespace: journey.models });
    expect(events.items.some((ev) => ev.involvedObject.name === 'stopped' && ev.reason === 'AgreementTooLow')).toBe(
      true,
    );
    await waitFor(
      'the bad candidate to run no pod',
      60_000,
      async () =>
        (
          await core.listNamespacedPod({
            namespace: journey.models,
            labelSelector: `ml-operator.dev/model-instance=${badInstance}`,
          })
        ).items.length === 0 || undefined,
    );

    // The good candidate: passed at the end of its test, then promoted through the Canary.
    const promoted = await until('promoted', 'to serve the promoted version', 200_000, (e) =>
      e.status?.state === 'InService' &&
      e.status.endpointConfigVersion !== tested &&
      e.status.traffic?.length === 1 &&
      e.status.traffic[0].service === candidate
        ? e
        : undefined,
    );
    log(
      `shadow verdicts: promoted after ${((Date.now() - started) / 1000).toFixed(1)}s: ${JSON.stringify(promoted.status!.rollout)}`,
    );
    expect(promoted.status!.rollout).toMatchObject({ strategy: 'Canary', phase: 'Promoted' });
    const after = await core.listNamespacedEvent({ namespace: journey.models });
    expect(
      after.items.some((ev) => ev.involvedObject.name === 'promoted' && ev.reason === 'Passed' && ev.type === 'Normal'),
    ).toBe(true);

    // Five more seconds of load on the promoted version, then both loads end.
    const until5s = promotedRun.elapsed() + 5000;
    await waitFor('5 s of load after the promotion', 10_000, async () => promotedRun.elapsed() >= until5s || undefined);
    stoppedRun.stop();
    promotedRun.stop();
    log(`shadow verdicts: load on stopped: ${describeReport(await stoppedRun.done)}`);
    log(`shadow verdicts: load on promoted: ${describeReport(await promotedRun.done)}`);
    // The bad candidate never answered a client; the promotion failed no request.
    expectServed(stoppedRun, { backends: stoppedReady.status!.traffic!.map((tr) => tr.service) });
    expectServed(promotedRun, { backends: [...servingBefore, candidate] });
    // And after the promotion, the candidate answered.
    const last = promotedRun.samples.at(-1)!.start;
    const lastSecond = promotedRun.samples.filter((s) => s.start >= last - 1000);
    expect(lastSecond.length).toBeGreaterThan(0);
    // The scikit-learn server names its pod, `<instance>-<hash>-<hash>`.
    expect(lastSecond.map((s) => s.backend?.pod).filter((pod) => !pod?.startsWith(`${candidate}-`))).toEqual([]);
  }, 900_000);

  it('rolls back a Canary whose candidate disagrees with the serving model, naming the measured agreement', async () => {
    const { journey, until, firstAnswer, applyEndpoint, rowLoad } = lab;
    const agree = { name: 'agree', builtin: 'agreement', min: 0.9, compare, intervalSeconds: 10 };
    await journey.applyConfig('gated', { models: [onNode('iris-1')] });
    await applyEndpoint('gated', {
      strategy: 'Canary',
      canary: { percent: 50, bakeSeconds: 300 },
      analysis: { checks: [agree] },
      drainSeconds: 5,
    });
    const v1 = await until('gated', 'to be InService', 300_000, (e) =>
      e.status?.state === 'InService' ? e : undefined,
    );
    const serving = v1.status!.traffic!.map((t) => t.service);
    await firstAnswer('gated');
    // The rows in a shuffled order (the data set is sorted by class), so that the candidate's share
    // of the first requests is a sample of all three classes.
    const order = shuffled(150, 7);
    const run = rowLoad('gated', { requests: 3000, rate: 10, maxDurationMs: 300_000, order });
    // The candidate: the model trained on shuffled labels, in place of iris 1.0.0.
    await journey.applyConfig('gated', { models: [onNode('iris-bad')] });
    const rolledBack = await until('gated', 'to roll the candidate back', 240_000, (e) =>
      e.status?.rollout?.phase === 'RolledBack' ? e : undefined,
    );
    const rollbackAt = run.elapsed();
    const rollout = rolledBack.status!.rollout!;
    log(`shadow verdicts: the agreement gate rolled back ${rollout.version}: ${JSON.stringify(rollout)}`);
    expect(rolledBack.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
    // The condition names the check, the agreement it measured and the bound. The shuffled-label
    // model agrees with iris 1.0.0 on 71 of the 150 rows offline; the check saw a sample of them.
    const condition = rolledBack.status!.conditions!.find((c) => c.type === 'Progressing')!;
    expect(condition).toMatchObject({ status: 'False', reason: 'AnalysisFailed' });
    const said = /check agree = (0(\.\d+)?), outside its bound \(>= 0\.9\)/.exec(condition.message ?? '');
    expect(said, condition.message).not.toBeNull();
    expect(Number(said![1])).toBeLessThan(0.9);
    // And the status keeps the check's record, with the same value.
    expect(rollout.analysis?.find((c) => c.name === 'agree')).toMatchObject({ result: 'Failed', value: said![1] });
    // Five seconds more on the serving version, then the load ends: not one request failed.
    const until5s = rollbackAt + 5000;
    await waitFor('5 s of load after the rollback', 10_000, async () => run.elapsed() >= until5s || undefined);
    run.stop();
    log(`shadow verdicts: load on gated: ${describeReport(await run.done)}`);
    const answeredBy = [...new Set(run.samples.map((s) => instanceOf(s.backend?.pod)).filter((b) => b !== undefined))];
    const candidates = answeredBy.filter((b) => !serving.includes(b));
    // The candidate took its canary share, and one instance of it only.
    expect(candidates).toHaveLength(1);
    expectServed(run, { backends: [...serving, ...candidates] });
    // Past the gateway's reload after the rollback, only the serving model answered.
    const late = run.samples.filter((s) => s.start >= rollbackAt + 3000);
    expect(late.length).toBeGreaterThan(0);
    expect(late.map((s) => instanceOf(s.backend?.pod)).filter((b) => !serving.includes(b!))).toEqual([]);
  }, 600_000);
});

/** A fixed shuffle of 0..n-1 (a 32-bit linear congruential generator from `seed`): the same order every run. */
function shuffled(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let x = seed;
  for (let i = n - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
