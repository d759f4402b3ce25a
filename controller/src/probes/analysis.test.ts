import { describe, expect, it } from 'vitest';
import type { AnalysisCheck, MachineLearningEndpointRollout } from '../api/generated.ts';
import { compareAnswers, comparer } from '../compare/compare.ts';
import { ComparisonStatistics } from '../compare/statistics.ts';
import { planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { defaultConfig } from '../options.ts';
import { planFingerprint } from '../rollout/strategies.ts';
import { runAnalysis } from './analysis.ts';
import type { AgentAnswer } from './data-capture.ts';

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

function analyse(checks: AnalysisCheck[], answers: AgentAnswer[], asked: string[][] = []) {
  const rollout = rolloutOf(checks);
  return runAnalysis({
    status: {
      rollout: {
        version: target.version,
        plan: planFingerprint(rollout),
        phase: 'Progressing',
        weight: 10,
        stepStartedAt: new Date(now.getTime() - 60_000).toISOString(),
      },
    },
    rollout,
    checks,
    target,
    serving,
    namespace: 'ns',
    endpoint: 'e',
    config: defaultConfig,
    provider: 'gatewayAPI',
    prometheus: undefined,
    agents: (instances) => {
      asked.push([...instances]);
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
