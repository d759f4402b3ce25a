import { describe, expect, it } from 'vitest';
import type { AnalysisCheck, MachineLearningEndpointRollout } from '../api/generated.ts';
import { compareAnswers, comparer } from '../compare/compare.ts';
import { ComparisonStatistics } from '../compare/statistics.ts';
import { planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { defaultConfig } from '../options/config.ts';
import { planFingerprint } from '../rollout/strategies.ts';
import { runAnalysis } from './analysis.ts';
import type { AgentAnswer } from './data-capture.ts';
import { latencyBoundsMs, RequestWindow } from '../agent/window.ts';

const models = new Map([
  ['iris', { image: 'iris:1' }],
  ['iris-v2', { image: 'iris:2' }],
]);
const version = (model: string, compared: boolean): VersionPlan => {
  const r = planFromTemplates('e', 'c', { models: [{ model }] }, models, compared);
  if (!r.ok) throw new Error('unresolved');
  return r.plan;
};
const serving = version('iris', false);
const target = version('iris-v2', true);
const now = new Date('2026-12-06T10:00:00Z');
const agree: AnalysisCheck = { name: 'agree', builtin: 'agreement', min: 0.9 };
const rolloutOf = (checks: AnalysisCheck[]): MachineLearningEndpointRollout => ({
  strategy: 'Canary',
  analysis: { checks },
});
/** The name the controller gives this attempt's comparison (desired/agent.ts). */
const comparisonName = `rollout:agree:${planFingerprint(rolloutOf([agree])).slice(0, 8)}:${serving.variants[0].instance}`;

/** One pod of the new version whose agent compared `n` requests with the serving version, `disagreeing` of them not equal. */
function pod(n: number, disagreeing: number): AgentAnswer {
  const c = comparer({});
  if (!c.ok) throw new Error(c.error);
  const s = new ComparisonStatistics();
  const answer = (label: string) => ({ status: 200, body: JSON.stringify(label), latencyMs: 3 });
  for (let i = 0; i < n; i++)
    s.record(
      compareAnswers(c.comparer, answer('setosa'), answer(i < disagreeing ? 'virginica' : 'setosa')),
      now.getTime(),
    );
  return {
    pod: 'iris-v2-a',
    shadows: [
      {
        name: comparisonName,
        url: `http://${serving.variants[0].instance}.ns.svc:80`,
        dropped: 0,
        skipped: 0,
        windowSeconds: 300,
        data: s.data(now.getTime()),
      },
    ],
  };
}

function analyse(
  checks: AnalysisCheck[],
  answers: AgentAnswer[],
  asked: string[][] = [],
  windows: (number | undefined)[] = [],
  candidate = target,
) {
  const rollout = rolloutOf(checks);
  return runAnalysis({
    status: {
      rollout: {
        version: candidate.version,
        plan: planFingerprint(rollout),
        phase: 'Progressing',
        weight: 10,
        stepStartedAt: new Date(now.getTime() - 60_000).toISOString(),
      },
    },
    rollout,
    checks,
    target: candidate,
    serving,
    namespace: 'ns',
    endpoint: 'e',
    config: defaultConfig,
    provider: 'gatewayAPI',
    prometheus: undefined,
    agents: (instances, windowSeconds) => {
      asked.push([...instances]);
      windows.push(windowSeconds);
      return Promise.resolve(answers);
    },
    now,
  });
}

describe('the agreement check, measured by the agents of the new version', () => {
  it('needs no Prometheus: it asks the new instances, and records the agreement they measured against its bound', async () => {
    const asked: string[][] = [];
    expect(await analyse([agree], [pod(150, 7)], asked)).toMatchObject([
      { name: 'agree', value: '0.9533', result: 'Passed', failures: 0, message: 'agree = 0.9533, must be >= 0.9' },
    ]);
    expect(asked).toEqual([[target.variants[0].instance]]);
    expect(await analyse([agree], [pod(150, 62)])).toMatchObject([
      { name: 'agree', value: '0.5867', result: 'Failed', failures: 1 },
    ]);
  });

  it('holds the step while nothing was compared; a metric check beside it still says Prometheus is missing', async () => {
    const records = await analyse([agree, { name: 'errors', builtin: 'errorRate', max: 0.01 }], [pod(0, 0)]);
    expect(records).toMatchObject([
      { name: 'agree', result: 'Inconclusive', inconclusive: 1 },
      { name: 'errors', result: 'Inconclusive', message: expect.stringContaining('no Prometheus is configured') },
    ]);
    expect(records?.[0].message).not.toContain('query');
  });
});

/** One pod of the new version whose agent's clients got `ok` answers of `okMs` and `failed` 5xx. */
function counted(pod: string, ok: number, okMs: number, failed = 0): AgentAnswer {
  const w = new RequestWindow(() => now.getTime());
  for (let i = 0; i < ok; i++) w.record('2xx', okMs);
  for (let i = 0; i < failed; i++) w.record('5xx', 2);
  return { pod, requests: w.read(30) };
}

describe('errorRate and latencyP99 from the agents', () => {
  const errors: AnalysisCheck = { name: 'errors', builtin: 'errorRate', source: 'Agents', max: 0.05 };
  const slow: AnalysisCheck = { name: 'slow', builtin: 'latencyP99', source: 'Agents', max: 50 };

  it("need no Prometheus: the new pods' counts over the check's interval are summed, then judged", async () => {
    const asked: string[][] = [];
    const windows: (number | undefined)[] = [];
    const records = await analyse(
      [errors, { ...slow, intervalSeconds: 45 }],
      [counted('a', 90, 20, 10), counted('b', 100, 20, 0)],
      asked,
      windows,
    );
    // 10 failed of 200: 0.05; every answer took 20 ms: the p99 is in the bucket that holds 20 ms.
    expect(records).toMatchObject([
      { name: 'errors', value: '0.05000', result: 'Passed' },
      { name: 'slow', result: 'Passed' },
    ]);
    const p99 = Number(records?.[1].value);
    const upper = latencyBoundsMs.find((b) => b >= 20)!;
    expect(p99).toBeGreaterThan(upper / 1.25);
    expect(p99).toBeLessThanOrEqual(upper);
    expect(asked).toEqual([[target.variants[0].instance], [target.variants[0].instance]]);
    expect(windows).toEqual([30, 45]);
    expect(await analyse([errors, slow], [counted('a', 80, 200, 20)])).toMatchObject([
      { name: 'errors', value: '0.2000', result: 'Failed', failures: 1 },
      { name: 'slow', result: 'Failed', failures: 1 },
    ]);
  });

  it('hold the step while no request came, or no pod answered; an older agent is named', async () => {
    expect(await analyse([errors], [counted('a', 0, 1)])).toMatchObject([
      { result: 'Inconclusive', message: expect.stringContaining('no client request reached') },
    ]);
    // One pod silent beside one that answered: it could be the failing one, so no value yet.
    expect(
      await analyse([errors], [counted('a', 100, 1), { pod: 'b', unreachable: 'pod b: connection refused' }]),
    ).toMatchObject([{ result: 'Inconclusive', message: expect.stringContaining("1 of the new version's 2 pod(s)") }]);
    expect(await analyse([errors], [{ pod: 'a', unreachable: 'pod a: connection refused' }])).toMatchObject([
      { result: 'Inconclusive', message: expect.stringContaining('connection refused') },
    ]);
    expect(
      await analyse([errors], [{ pod: 'old', status: { enabled: false, healthy: true, error: null } }]),
    ).toMatchObject([{ result: 'Inconclusive', message: expect.stringContaining('pods old do not count requests') }]);
  });

  it('say so when the new version has no agent to ask', async () => {
    const asked: string[][] = [];
    const records = await analyse([errors], [], asked, [], version('iris-v2', false));
    expect(records).toMatchObject([
      { result: 'Inconclusive', message: expect.stringContaining('have no model agent') },
    ]);
    // Nothing to ask: no pod of it runs an agent.
    expect(asked).toEqual([]);
  });
});
