import { describe, expect, it } from 'vitest';
import { compareAnswers, comparer } from '../compare/compare.ts';
import { ComparisonStatistics } from '../compare/statistics.ts';
import { agreementMeasurement, agreementSubjects } from './agreement.ts';
import type { AgentShadowReport } from './shadows.ts';
import { waitFor } from '../../../ci/wait.ts';
import { listenOn, send, startTestAgent } from '../agent/testing/harness.ts';
import { agentAdminPortName, agentContainerName, rolloutComparisons } from '../desired/agent.ts';
import { labels as podLabels } from '../desired/labels.ts';
import { planFromTemplates } from '../desired/plan.ts';
import { resources } from '../kube/resources.ts';
import { setUp } from '../reconcile/testing/fixtures.ts';
import { askAgents } from './data-capture.ts';

const labels = comparer({ path: '$.p' });
if (!labels.ok) throw new Error(labels.error);
const c = labels.comparer;
const answer = (p: unknown, status = 200) => ({ status, body: JSON.stringify({ p }), latencyMs: 5 });
const at = Date.parse('2026-12-06T10:00:00Z');

/** A new pod's report of its comparison with the serving version: `n` pairs, `disagreeing` of them not equal, `servingErrors` more failed. */
function report(name: string, n: number, disagreeing: number, servingErrors = 0): AgentShadowReport {
  const s = new ComparisonStatistics();
  for (let i = 0; i < n; i++)
    s.record(compareAnswers(c, answer('setosa'), answer(i < disagreeing ? 'x' : 'setosa')), at);
  for (let i = 0; i < servingErrors; i++) s.record(compareAnswers(c, answer(null, 503), answer('setosa')), at);
  return {
    name,
    url: `http://iris-1.ns.svc:80`,
    dropped: 0,
    skipped: 0,
    windowSeconds: 300,
    data: JSON.parse(JSON.stringify(s.data(at))) as AgentShadowReport['data'],
  };
}

const plan = '0123456789abcdef';
const agree = { name: 'agree' };

describe("the agreement check's measure", () => {
  it("is the share of the new pods' predictions equal to the serving version's, summed over the pods and the serving variants, this attempt only", () => {
    const m = agreementMeasurement(agree, plan, [
      {
        pod: 'a',
        shadows: [report('rollout:agree:01234567:iris-1', 100, 10), report('rollout:other:01234567:iris-1', 100, 100)],
      },
      {
        pod: 'b',
        shadows: [
          report('rollout:agree:01234567:iris-1', 50, 5),
          report('rollout:agree:01234567:small-1', 50, 45),
          // An earlier attempt's tally, still in the agent until its config changes.
          report('rollout:agree:fedcba98:iris-1', 50, 50),
        ],
      },
      // A shadow variant's comparison is not the rollout's.
      { pod: 'c', shadows: [report('shadow-b', 100, 100)] },
    ]);
    expect(m).toEqual({ value: (90 + 45 + 5) / 200 });
  });

  it('is nothing yet (the step holds) below its minimum of compared requests, or with no agent answering, and says why', () => {
    expect(agreementMeasurement(agree, plan, [])).toEqual({ empty: 'no ready pod of the new version yet' });
    expect(agreementMeasurement(agree, plan, [{ pod: 'a', unreachable: 'pod a: connect ECONNREFUSED' }])).toEqual({
      empty: 'no model agent of the new version answered: pod a: connect ECONNREFUSED',
    });
    const few = [{ pod: 'a', shadows: [report('rollout:agree:01234567:iris-1', 19, 0, 4)] }];
    expect(agreementMeasurement(agree, plan, few)).toEqual({
      empty:
        '19 request(s) of the new version compared with the serving version, at least 20 needed (1 pod(s), 23 mirrored, 4 serving and 0 new-version error(s))',
    });
    expect(agreementMeasurement({ name: 'agree', minCompared: 19 }, plan, few)).toEqual({ value: 1 });
  });

  it('compares only new instances with an agent: one the serving version runs too answers the same, one without an agent cannot be compared', () => {
    const models = new Map([
      ['iris', { image: 'i:1' }],
      ['iris-v2', { image: 'i:2' }],
    ]);
    const of = (cfg: Parameters<typeof planFromTemplates>[2], compared: boolean) => {
      const r = planFromTemplates('e', 'c', cfg, models, compared);
      if (!r.ok) throw new Error('unresolved');
      return r.plan;
    };
    const serving = of({ models: [{ model: 'iris', instances: 2 }] }, true);
    // Only the replicas changed: every answer comes from the serving version's instance.
    expect(agreementSubjects(of({ models: [{ model: 'iris', instances: 3 }] }, true), serving)).toEqual({
      measured: { value: 1 },
    });
    // A new shadow is not compared by this check; the serving instance is shared.
    expect(
      agreementSubjects(
        of({ models: [{ model: 'iris' }, { model: 'iris-v2', shadow: { percent: 10 } }] }, true),
        serving,
      ),
    ).toEqual({ measured: { value: 1 } });
    const withAgent = of({ models: [{ model: 'iris-v2' }] }, true);
    expect(agreementSubjects(withAgent, serving)).toEqual({ instances: [withAgent.variants[0].instance] });
    const withoutAgent = of({ models: [{ model: 'iris-v2' }] }, false);
    expect(agreementSubjects(withoutAgent, serving)).toMatchObject({
      measured: { empty: expect.stringContaining('have no model agent') },
    });
    // A shadow the serving version runs, promoted by its test: it answered no client there, so it is compared.
    const tested = of(
      {
        models: [
          { model: 'iris' },
          { model: 'iris-v2', shadow: { percent: 100, test: { criteria: { agreement: 0.9 } } } },
        ],
      },
      true,
    );
    const promoted = { ...tested, variants: [{ ...tested.variants[1], variant: { model: 'iris-v2' } }] };
    expect(agreementSubjects(promoted, tested)).toEqual({ instances: [tested.variants[1].instance] });
  });
});

describe('the agreement check with real agents', () => {
  it("reads exactly the share of the new version's predictions the serving version shares, from its pods' agents", async () => {
    // Models answering {"label": row % 3}; the new one changes every 4th row's label.
    const model = (disagreeEvery: number) =>
      listenOn((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const row = (JSON.parse(Buffer.concat(chunks).toString()) as { row: number }).row;
          const label = disagreeEvery && row % disagreeEvery === 0 ? 'other' : `class-${row % 3}`;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ label }));
        });
      });
    const servingModel = await model(0);
    const newModel = await model(4);
    const serving = planFromTemplates('e', 'c', { models: [{ model: 'iris' }] }, new Map([['iris', { image: 'i:1' }]]));
    const target = planFromTemplates(
      'e',
      'c',
      { models: [{ model: 'iris' }] },
      new Map([['iris', { image: 'i:2' }]]),
      true,
    );
    if (!serving.ok || !target.ok) throw new Error('unresolved');
    const check = { name: 'agree', builtin: 'agreement' as const, min: 0.9, compare: { path: '$.label' } };
    // What the controller writes for the new pods; the serving Service is reached by address here (no cluster DNS).
    const entries = rolloutComparisons('ns', target.plan, serving.plan, [check], {
      version: target.plan.version,
      plan,
      phase: 'Progressing',
    }).map((e) => ({
      ...e,
      url: servingModel.url,
    }));
    const agent = await startTestAgent(
      newModel.url,
      { enabled: false },
      {
        env: { ML_MODEL_VERSION: target.plan.variants[0].version },
      },
    );
    try {
      agent.writeConfig(JSON.stringify({ capture: { enabled: false }, shadows: entries }));
      await agent.agent.reload();
      for (let row = 0; row < 200; row++) {
        const answer = await send(agent.url, {
          body: JSON.stringify({ row }),
          headers: { 'content-type': 'application/json' },
        });
        expect(answer.status).toBe(200);
      }
      const t = setUp();
      const instance = target.plan.variants[0].instance;
      await t.cluster.create(resources.pod, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `${instance}-a`, namespace: 'ns', labels: { [podLabels.modelInstance]: instance } },
        spec: {
          containers: [
            {
              name: agentContainerName,
              ports: [{ name: agentAdminPortName, containerPort: Number(new URL(agent.admin).port) }],
            },
          ],
        },
        status: { podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] },
      });
      const measured = await waitFor('every copy compared', 10_000, async () => {
        const answers = await askAgents(
          t.cluster,
          'ns',
          [instance],
          agentContainerName,
          agentAdminPortName,
          podLabels.modelInstance,
        );
        const m = agreementMeasurement(check, plan, answers);
        return 'value' in m && answers[0].shadows?.[0].data.sinceStart.requests === 200 ? m : undefined;
      });
      // Rows 0, 4, ..., 196 disagree: 50 of 200.
      expect(measured).toEqual({ value: 0.75 });
    } finally {
      await agent.dispose();
      await servingModel.close();
      await newModel.close();
    }
  });
});
