// A shadow test's verdict acted on by the reconciler: Stop scales the shadow to zero and takes it out
// of the agents' mirrors; Promote rolls out the version with the shadow serving, from the shadow's
// running pods, and keeps serving it once the test's record has left the status. The verdict itself
// is judged in rollout/shadow-tests.test.ts; here the status is given one, as the agents' figures
// would make it.
import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointStatus, ShadowTest } from '../api/generated.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import { key, model, namespace, setUp } from './testing/fixtures.ts';

const linear = { strategy: 'Linear', linear: { stepPercent: 50, intervalSeconds: 10 }, drainSeconds: 1 };

async function serveWithShadow(test: ShadowTest, serving: Record<string, unknown> = {}) {
  const t = setUp();
  await t.cluster.put(resources.model, model('acme/iris:1'));
  await t.cluster.put(resources.model, { ...model('acme/cand:1'), metadata: { name: 'cand', namespace } });
  await t.cluster.put(resources.endpointConfig, {
    apiVersion: 'ml-operator.dev/v1alpha1',
    kind: 'MachineLearningEndpointConfig',
    metadata: { name: 'iris', namespace },
    spec: {
      models: [
        { model: 'iris', weight: 1, ...serving },
        { model: 'cand', shadow: { percent: 100, test } },
      ],
    },
  });
  await t.cluster.put(resources.endpoint, {
    apiVersion: 'ml-operator.dev/v1alpha1',
    kind: 'MachineLearningEndpoint',
    metadata: { name: 'iris', namespace },
    spec: { config: 'iris', rollout: linear },
  });
  await rounds(t, () => t.endpoint().status?.state === 'InService' && !!shadowEntry(t)?.test?.startedAt);
  return t;
}

type T = ReturnType<typeof setUp>;
const shadowEntry = (t: T) => t.endpoint().status?.shadows?.find((s) => s.variant === 'cand');

async function rounds(t: T, done: () => boolean, most = 30) {
  for (let i = 0; i < most && !done(); i++) {
    await t.reconciler.reconcile(key);
    await t.cluster.rollOutDeployments();
    t.advance(5);
  }
  if (!done()) throw new Error(`not reached after ${most} rounds: ${JSON.stringify(t.endpoint().status, null, 1)}`);
}

/** The verdict the agents' figures would give, written into the status as the reconciler writes it. */
async function verdict(t: T, phase: 'Passed' | 'Failed', action: 'Promote' | 'Stop') {
  const endpoint = t.endpoint();
  const status = structuredClone<MachineLearningEndpointStatus>(endpoint.status!);
  const entry = status.shadows!.find((s) => s.variant === 'cand')!;
  entry.test = {
    ...entry.test!,
    phase,
    reason: phase === 'Passed' ? 'Passed' : 'AgreementTooLow',
    message: phase === 'Passed' ? 'every criterion holds: agreement 0.98 >= 0.9' : 'agreement 0.3 (60/200) < 0.9',
    decidedAt: t.now().toISOString(),
    action,
    compared: 200,
    agreement: phase === 'Passed' ? 0.98 : 0.3,
  };
  await t.cluster.applyStatus(resources.endpoint, { ...endpoint, status });
}

const deployment = (t: T, instance: string) =>
  t.cluster.read<KubeObject & { spec: { replicas?: number } }>(resources.deployment, namespace, instance);

describe('a shadow test acted on', () => {
  it('Stop: the shadow runs no pod and is no longer mirrored to; serving is untouched', async () => {
    const t = await serveWithShadow({ durationSeconds: 600, criteria: { agreement: 0.9 } });
    const shadow = shadowEntry(t)!.service;
    const serving = t.endpoint().status!.traffic![0].service;
    expect(deployment(t, shadow)!.spec.replicas).toBe(1);
    await verdict(t, 'Failed', 'Stop');
    await rounds(t, () => deployment(t, shadow)!.spec.replicas === 0, 3);
    expect(shadowEntry(t)).toMatchObject({ mirrored: false, replicas: 0, test: { phase: 'Failed', action: 'Stop' } });
    const condition = t.endpoint().status!.conditions!.find((c) => c.type === 'ShadowTested');
    expect(condition).toMatchObject({ status: 'False', reason: 'AgreementTooLow' });
    expect(t.events).toContainEqual(expect.objectContaining({ type: 'Warning', reason: 'AgreementTooLow' }));
    // Not mirrored on purpose: no ShadowNotReady warning for it.
    expect(t.endpoint().status!.conditions!.find((c) => c.type === 'ShadowsMirrored')).toMatchObject({
      status: 'True',
      message: `cand (${shadow}) stopped by its shadow test (see ShadowTested)`,
    });
    expect(t.events.filter((e) => e.reason === 'ShadowNotReady')).toEqual([]);
    expect(t.endpoint().status!.traffic).toMatchObject([{ service: serving, weight: 100 }]);
    expect(deployment(t, serving)!.spec.replicas).toBe(1);
  });

  it('Promote: the shadow becomes the serving variant through the strategy, from its running pods, and stays so', async () => {
    const t = await serveWithShadow(
      { durationSeconds: 600, criteria: { agreement: 0.9 }, onPass: 'Promote' },
      { instances: 2 },
    );
    const tested = t.endpoint().status!.endpointConfigVersion!;
    const shadow = shadowEntry(t)!.service;
    const template = structuredClone((deployment(t, shadow)!.spec as { template: unknown }).template);
    expect(deployment(t, shadow)!.spec.replicas).toBe(1);
    const deploymentsBefore = t.cluster.caches.deployments
      .list(namespace)
      .map((d) => d.metadata.name)
      .sort();
    await verdict(t, 'Passed', 'Promote');

    await rounds(t, () => t.endpoint().status?.endpointConfigVersion !== tested);
    const promoted = t.endpoint().status!;
    // It went through the Linear steps, and what serves is the shadow's own instance.
    expect(promoted.rollout).toMatchObject({ phase: 'Promoted', history: [{ weight: 50 }, { weight: 100 }] });
    expect(t.events).toContainEqual(expect.objectContaining({ type: 'Normal', reason: 'Passed' }));
    await rounds(t, () => t.endpoint().status?.traffic?.length === 1);
    expect(t.endpoint().status!.traffic).toMatchObject([{ variant: 'cand', service: shadow, weight: 100 }]);
    expect(t.endpoint().status!.shadows).toBeUndefined();
    // Its pods were scaled to the replicas of the variant it replaced, their template untouched.
    expect(deployment(t, shadow)!.spec.replicas).toBe(2);
    expect((deployment(t, shadow)!.spec as { template: unknown }).template).toEqual(template);
    // No pod was made for it: every Deployment now is one from before.
    const deploymentsAfter = t.cluster.caches.deployments.list(namespace).map((d) => d.metadata.name);
    for (const d of deploymentsAfter) expect(deploymentsBefore).toContain(d);
    // The user's config is as written; the version's snapshot carries the promotion.
    const config = t.cluster.read<KubeObject & { spec: { models: unknown[] } }>(
      resources.endpointConfig,
      namespace,
      'iris',
    )!;
    expect(config.spec.models).toHaveLength(2);
    const snapshot = t.cluster.caches.configs
      .list(namespace)
      .find((c) => c.metadata.labels?.['ml-operator.dev/version'] === promoted.endpointConfigVersion)!;
    expect(snapshot.metadata.labels?.['ml-operator.dev/promoted']).toMatch(/^[0-9a-f]+$/);

    // The test's record has left the status with the shadow: the snapshot keeps the promotion.
    for (let i = 0; i < 5; i++) {
      t.advance(30);
      await t.reconciler.reconcile(key);
      await t.cluster.rollOutDeployments();
    }
    expect(t.endpoint().status).toMatchObject({
      endpointConfigVersion: promoted.endpointConfigVersion,
      state: 'InService',
    });
    expect(t.endpoint().status!.pendingEndpointConfigVersion).toBeUndefined();
  });

  it('changing the criteria is a new config version over the same pods: no Deployment is written, the test goes on', async () => {
    const t = await serveWithShadow({ durationSeconds: 600, criteria: { agreement: 0.9 } });
    const before = t.endpoint().status!;
    const startedAt = shadowEntry(t)!.test!.startedAt;
    const writes = t.cluster.writes.length;
    await t.cluster.put(resources.endpointConfig, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpointConfig',
      metadata: { name: 'iris', namespace },
      spec: {
        models: [
          { model: 'iris', weight: 1 },
          { model: 'cand', shadow: { percent: 100, test: { durationSeconds: 900, criteria: { agreement: 0.95 } } } },
        ],
      },
    });
    await rounds(t, () => t.endpoint().status?.endpointConfigVersion !== before.endpointConfigVersion);
    await rounds(t, () => t.endpoint().status?.state === 'InService');
    expect(
      t.cluster.writes.slice(writes).filter((w) => w.plural === resources.deployment.plural && w.verb !== 'status'),
    ).toEqual([]);
    // The new version's config snapshot was written: the reconciler did act on the change.
    expect(
      t.cluster.writes.slice(writes).some((w) => w.plural === resources.endpointConfig.plural && w.verb !== 'status'),
    ).toBe(true);
    expect(shadowEntry(t)!.test).toMatchObject({ phase: 'Pending', startedAt });
  });

  it('a rollback after a promotion stands: a new test of the same models that fails is not overridden by the earlier promotion', async () => {
    const t = await serveWithShadow({ durationSeconds: 600, criteria: { agreement: 0.9 }, onPass: 'Promote' });
    const tested = t.endpoint().status!.endpointConfigVersion!;
    await verdict(t, 'Passed', 'Promote');
    await rounds(t, () => t.endpoint().status?.endpointConfigVersion !== tested);
    const promoted = t.endpoint().status!.endpointConfigVersion!;
    await rounds(t, () => t.endpoint().status?.state === 'InService');

    // The user rolls back to the tested version: the shadow is a shadow again, and its new test fails.
    const pin = (serveVersion?: string) =>
      t.cluster.put(resources.endpoint, {
        apiVersion: 'ml-operator.dev/v1alpha1',
        kind: 'MachineLearningEndpoint',
        metadata: { name: 'iris', namespace },
        spec: { config: 'iris', rollout: linear, ...(serveVersion ? { serveVersion } : {}) },
      });
    await pin(tested);
    await rounds(
      t,
      () => t.endpoint().status?.endpointConfigVersion === tested && t.endpoint().status?.state === 'InService',
    );
    await rounds(t, () => !!shadowEntry(t)?.test?.startedAt);
    await verdict(t, 'Failed', 'Stop');
    await rounds(t, () => deployment(t, shadowEntry(t)!.service)!.spec.replicas === 0, 3);

    // Following the config again: the failed test wins over the mark of the earlier promotion.
    await pin(undefined);
    for (let i = 0; i < 6; i++) {
      t.advance(30);
      await t.reconciler.reconcile(key);
      await t.cluster.rollOutDeployments();
    }
    expect(t.endpoint().status).toMatchObject({ endpointConfigVersion: tested, state: 'InService' });
    expect(t.endpoint().status!.pendingEndpointConfigVersion).toBeUndefined();
    expect(t.endpoint().status!.endpointConfigVersion).not.toBe(promoted);
    expect(deployment(t, shadowEntry(t)!.service)!.spec.replicas).toBe(0);
  });
});
