import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { planFingerprint } from '../rollout/strategies.ts';
import { defaultConfig } from '../options/config.ts';
import { routingProvider } from '../routing/providers.ts';
import type { RolloutDecision } from '../rollout/decide.ts';
import { desiredState, wantedWorkloads, type DesiredStateInputs } from './desired-state.ts';
import type { Templates } from './target.ts';

const endpoint = {
  metadata: { name: 'iris', namespace: 'models', uid: 'u1', generation: 1 },
  spec: { config: 'iris' },
} as MachineLearningEndpoint;

/** The config template `iris` (2 instances of the model iris) and the model's template, with `image`. */
function templatesOf(image: string, kept: (version: string) => VersionPlan | undefined = () => undefined): Templates {
  return {
    config: { spec: { models: [{ model: 'iris', instances: 2 }] } },
    models: new Map([['iris', { image }]]),
    kept,
    promotionMarked: () => false,
    pin: (p) => p,
  };
}

function inputs(o: Partial<DesiredStateInputs> & { available?: boolean } = {}): DesiredStateInputs {
  const config = structuredClone(defaultConfig);
  return {
    ctx: { endpoint, config },
    provider: routingProvider(config),
    deadlineSeconds: 600,
    routed: false,
    hostBlocked: false,
    live: { startReplicas: () => 1, hostNodes: () => [], loaded: () => true, auxiliaryMissing: false },
    observed: { readyOf: () => (o.available ? 2 : 0) },
    templates: templatesOf('acme/iris:1'),
    rollout: {
      generation: 1,
      spec: endpoint.spec,
      status: {},
      workload: () => ({ ready: o.available ? 2 : 0, available: !!o.available }),
      now: new Date('2026-01-01T00:00:00Z'),
    },
    ...o,
  };
}

const kinds = (ds: { resource: { kind: string } }[]) => ds.map((d) => d.resource.kind).sort();

describe('desiredState, from a spec alone', () => {
  it('a first version: its snapshots and workloads, the gateway, and no route until it is Available', () => {
    const creating = desiredState(inputs());
    expect(kinds(creating.workloads)).toEqual([
      'Deployment',
      'MachineLearningEndpointConfig',
      'MachineLearningModel',
      'PodDisruptionBudget',
      'Service',
    ]);
    expect(kinds(creating.routing)).toEqual(['Gateway']);
    expect(creating.status).toMatchObject({
      state: 'Creating',
      conditions: expect.arrayContaining([
        expect.objectContaining({
          type: 'Ready',
          reason: 'Creating',
          message: expect.stringMatching(/^waiting for the first version to become Available: iris-\w+ 0\/2 ready$/),
        }),
      ]),
    });
    const serving = desiredState(inputs({ available: true }));
    expect(kinds(serving.routing)).toEqual(['Gateway', 'VirtualService']);
    expect(serving.status).toMatchObject({
      state: 'InService',
      ready: '2/2',
      traffic: [{ variant: 'iris', weight: 100 }],
    });
  });

  it('a host another endpoint holds: nothing routed, its route objects removed', () => {
    const blocked = desiredState(
      inputs({
        available: true,
        hostBlocked: true,
        rollout: {
          ...inputs({ available: true }).rollout,
          routeBlocked: { type: 'Ready', status: 'False', reason: 'HostConflict', message: 'taken' },
        },
      }),
    );
    expect(blocked.routing).toEqual([]);
    expect(blocked.removeRouting).toBe(true);
    expect(blocked.status).toMatchObject({
      state: 'Failed',
      conditions: expect.arrayContaining([expect.objectContaining({ type: 'Ready', reason: 'HostConflict' })]),
    });
  });
});

describe('desiredState, a rollout under an agreement check', () => {
  it("tells the new version's agents to compare each answer with the serving version's, the serving one the reference", () => {
    const rollout = {
      strategy: 'Canary' as const,
      analysis: { checks: [{ name: 'agree', builtin: 'agreement' as const, min: 0.9 }] },
    };
    const old = planFromTemplates(
      'iris',
      'iris',
      { models: [{ model: 'iris', instances: 2 }] },
      new Map([['iris', { image: 'acme/iris:1' }]]),
    );
    if (!old.ok) throw new Error('no plan');
    const base = inputs({ available: true });
    const spec = { ...endpoint.spec, rollout };
    const state = desiredState({
      ...base,
      ctx: { ...base.ctx, endpoint: { ...endpoint, spec } },
      routed: true,
      templates: templatesOf('acme/iris:2', (v) => (v === old.plan.version ? old.plan : undefined)),
      rollout: {
        ...base.rollout,
        spec,
        status: { endpointConfigVersion: old.plan.version, state: 'InService' },
      },
    });
    // The new version: iris 2, each variant with an agent (the rollout asks the agents for agreement).
    const next = state.resolved.target!;
    expect(next.variants.map((v) => [v.model.image, !!v.agent])).toEqual([['acme/iris:2', true]]);
    const configMap = state.workloads.find((d) => d.resource.kind === 'ConfigMap');
    const text = (configMap?.object as { data?: Record<string, string> } | undefined)?.data?.['config.json'];
    expect(JSON.parse(text ?? '{}')).toMatchObject({
      shadows: [
        {
          name: `rollout:agree:${planFingerprint(rollout).slice(0, 8)}:${old.plan.variants[0].instance}`,
          url: `http://${old.plan.variants[0].instance}.models.svc:80`,
          percent: 100,
          sources: [next.variants[0].version],
          reference: 'copy',
        },
      ],
    });
    expect(kinds(state.workloads).filter((k) => k === 'Deployment')).toHaveLength(2);
  });
});

describe('wantedWorkloads', () => {
  it('wants no autoscaler for an instance whose last version runs it at a fixed count (autoscaling removed)', () => {
    const models = new Map([['iris', { image: 'acme/iris:1' }]]);
    const autoscaled = planFromTemplates(
      'iris',
      'iris',
      {
        models: [{ model: 'iris', autoscaling: { minInstances: 1, maxInstances: 4, target: { cpuUtilization: 70 } } }],
      },
      models,
    );
    const fixed = planFromTemplates('iris', 'iris', { models: [{ model: 'iris', instances: 2 }] }, models);
    if (!autoscaled.ok || !fixed.ok) throw new Error('no plan');
    const instance = fixed.plan.variants[0].instance;
    // The same model version: removing autoscaling keeps the instance, and only its replicas change hands.
    expect(autoscaled.plan.variants[0].instance).toBe(instance);
    const i = inputs();
    const deploy = (...plans: (typeof fixed.plan)[]) =>
      wantedWorkloads(
        i.ctx,
        i.provider,
        {
          deploy: plans.map((plan) => ({ plan, replicas: new Map([[instance, 2]]) })),
          keepVersions: new Set(),
          keepInstances: new Set([instance]),
          outcome: {},
        } as unknown as RolloutDecision,
        600,
        i.live,
      );
    const autoscalers = (w: Map<string, { resource: { kind: string } }>) =>
      [...w.values()].filter((d) => d.resource.kind === 'HorizontalPodAutoscaler').length;
    expect(autoscalers(deploy(autoscaled.plan))).toBe(1);
    // Serving autoscaled, the new version fixed: the autoscaler would take the replicas back from it.
    expect(autoscalers(deploy(autoscaled.plan, fixed.plan))).toBe(0);
    expect(autoscalers(deploy(fixed.plan, autoscaled.plan))).toBe(1);
  });
});
