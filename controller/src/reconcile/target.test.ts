import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { planFromTemplates, type VersionPlan } from '../desired/plan.ts';
import { defaultConfig } from '../options/config.ts';
import { resolveTarget, type Templates } from './target.ts';

const now = new Date('2026-01-01T00:00:00Z');
const endpoint = (spec: Partial<MachineLearningEndpoint['spec']> = {}, status?: MachineLearningEndpoint['status']) =>
  ({
    metadata: { name: 'iris', namespace: 'models' },
    spec: { config: 'iris', ...spec },
    ...(status ? { status } : {}),
  }) as MachineLearningEndpoint;

const kept1 = planFromTemplates(
  'iris',
  'iris',
  { models: [{ model: 'iris' }] },
  new Map([['iris', { image: 'acme/iris:1' }]]),
);
if (!kept1.ok) throw new Error('no plan');
const kept = kept1.plan;

function templates(o: Partial<Templates> = {}): Templates {
  return {
    config: { spec: { models: [{ model: 'iris' }] } },
    models: new Map([['iris', { image: 'acme/iris:2' }]]),
    kept: (v) => (v === kept.version ? kept : undefined),
    promotionMarked: () => false,
    pin: (plan) => plan,
    ...o,
  };
}

const images = (plan: VersionPlan | undefined) => plan?.variants.map((v) => v.model.image);

describe('resolveTarget, from templates alone', () => {
  it('the templates give the version; spec.serveVersion pins a kept one instead, or says it was never kept', () => {
    expect(images(resolveTarget(endpoint(), templates(), defaultConfig, now).target)).toEqual(['acme/iris:2']);
    const pinned = resolveTarget(endpoint({ serveVersion: kept1.plan.version }), templates(), defaultConfig, now);
    expect(pinned).toEqual({ target: kept1.plan });
    expect(resolveTarget(endpoint({ serveVersion: 'nope' }), templates(), defaultConfig, now).problem).toMatchObject({
      reason: 'VersionNotFound',
      message: expect.stringContaining('spec.serveVersion nope is not a version this endpoint kept'),
    });
  });

  it('applies the upgrade rules (pin) to the version it resolves, and only to a version', () => {
    const pin = (plan: VersionPlan) => ({
      ...plan,
      variants: plan.variants.map((v) => ({ ...v, fetcherImage: 'ml-operator:0.1.0' })),
    });
    const resolved = resolveTarget(endpoint(), templates({ pin }), defaultConfig, now);
    expect(resolved.target?.variants.map((v) => v.fetcherImage)).toEqual(['ml-operator:0.1.0']);
    const none = resolveTarget(endpoint(), templates({ pin, config: undefined }), defaultConfig, now);
    expect(none.target).toBeUndefined();
  });

  it('a missing template is waited for, unless the serving version was made from it; a snapshot is no template', () => {
    expect(resolveTarget(endpoint(), templates({ config: undefined }), defaultConfig, now)).toMatchObject({
      problem: { reason: 'WaitingForTemplates' },
      recheckMs: 30_000,
    });
    // The serving version was made from the model that is gone: a problem at once.
    const serving = endpoint({}, { endpointConfigVersion: kept1.plan.version });
    expect(resolveTarget(serving, templates({ models: new Map() }), defaultConfig, now).problem).toMatchObject({
      reason: 'ModelNotFound',
      message: expect.stringContaining('MachineLearningModel models/iris named by config iris does not exist'),
    });
    const snapshot = templates({ config: { spec: { models: [{ model: 'iris' }] }, snapshot: true } });
    expect(resolveTarget(endpoint(), snapshot, defaultConfig, now).problem).toMatchObject({
      reason: 'ConfigNotFound',
      message: expect.stringContaining('is a snapshot made by ml-operator'),
    });
  });

  it('refuses autoscaling the cluster does not serve, naming the API', () => {
    const autoscaled = templates({
      config: {
        spec: {
          models: [
            {
              model: 'iris',
              cpus: '500m',
              autoscaling: { minInstances: 1, maxInstances: 3, target: { cpuUtilization: 70 } },
            },
          ],
        },
      },
    });
    expect(resolveTarget(endpoint(), autoscaled, defaultConfig, now).target).toBeDefined();
    const missing = resolveTarget(endpoint(), { ...autoscaled, autoscalersMissing: true }, defaultConfig, now);
    expect(missing.problem).toMatchObject({
      reason: 'AutoscalingUnsupported',
      message: expect.stringContaining('HorizontalPodAutoscaler API (autoscaling/v2) is not served'),
    });
  });

  it('gives a rollout that asks the agents for a measure a version whose variants have agents', () => {
    const rollout = {
      strategy: 'Canary' as const,
      analysis: { checks: [{ name: 'agree', builtin: 'agreement' as const, min: 0.9 }] },
    };
    const plain = resolveTarget(endpoint(), templates(), defaultConfig, now).target!;
    const asked = resolveTarget(endpoint({ rollout }), templates(), defaultConfig, now).target!;
    expect(plain.variants.map((v) => !!v.agent)).toEqual([false]);
    expect(asked.variants.map((v) => !!v.agent)).toEqual([true]);
    expect(asked.version).not.toBe(plain.version);
  });
});
