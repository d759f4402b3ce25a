// The endpoint reconciler over an in-memory API server whose caches the test delivers to by hand, so
// that the interleavings of a slow watch are reproduced exactly, every run.
import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointStatus } from '../api/generated.ts';
import { resources } from '../kube/resources.ts';
import { key, model, namespace, serveFirstVersion, setUp } from './testing/fixtures.ts';

describe('status read-your-writes', () => {
  it('decides from the newest status it wrote even when the watch delivers an older write of its own first', async () => {
    const t = setUp();
    await serveFirstVersion(t, {
      strategy: 'Linear',
      linear: { stepPercent: 50, intervalSeconds: 10 },
      drainSeconds: 1,
    });

    // A new version. From here the endpoint's watch lags: its events arrive only when the test says.
    t.cluster.held.add(resources.endpoint.plural);
    await t.cluster.put(resources.model, model('acme/iris:2'));
    await t.reconciler.reconcile(key); // deploys the new version, writes Updating (status write 1)
    await t.cluster.rollOutDeployments();
    t.advance(1);
    await t.reconciler.reconcile(key); // the new version is Available: step 1, 50% (status write 2)
    const step1 = t.endpoint().status!.rollout!;
    expect(step1).toMatchObject({ step: 1, weight: 50, history: [{ step: 1, weight: 50 }] });

    // The watch delivers the first of the two writes only: the cache now shows a status older than
    // the one written last. A round woken now (the route changed) must not decide from it.
    expect(t.cluster.deliverOldest(resources.endpoint)).toBe(true);
    t.advance(1);
    await t.reconciler.reconcile(key);
    expect(t.endpoint().status!.rollout).toMatchObject({
      step: 1,
      weight: 50,
      stepStartedAt: step1.stepStartedAt,
      history: [{ step: 1, weight: 50 }],
    });

    // Every status written from the first step on keeps it, through to the promotion.
    t.cluster.held.clear();
    t.cluster.deliver();
    for (let round = 0; round < 10 && t.endpoint().status?.rollout?.phase !== 'Promoted'; round++) {
      t.advance(5);
      await t.reconciler.reconcile(key);
      await t.cluster.rollOutDeployments();
    }
    expect(t.endpoint().status!.rollout).toMatchObject({
      phase: 'Promoted',
      history: [
        { step: 1, weight: 50, startedAt: step1.stepStartedAt },
        { step: 2, weight: 100 },
      ],
    });
    const afterStep1 = t.cluster.endpointStatusWrites.slice(
      t.cluster.endpointStatusWrites.findIndex(
        (w) => (w.status as MachineLearningEndpointStatus).rollout?.weight === 50,
      ),
    );
    for (const w of afterStep1)
      expect(
        (w.status as MachineLearningEndpointStatus).rollout?.history?.[0],
        `status written at resourceVersion ${w.resourceVersion}`,
      ).toMatchObject({ step: 1, weight: 50 });
  });
});

describe('Linear rollouts through a watch that lags at random', () => {
  // About 2 s of reconciles; the bound is for a loaded machine, not a speed target.
  it('keep every step in their history, 100 rollouts in a row', { timeout: 60_000 }, async () => {
    // A seeded generator: the seed is printed, and RECONCILE_SEED replays a run.
    const seed = Number(process.env.RECONCILE_SEED ?? Math.floor(Math.random() * 2 ** 31));
    let state = seed;
    const random = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
    console.log(`Linear rollouts with a lagging watch: seed ${seed} (RECONCILE_SEED=${seed} replays it)`);

    const t = setUp();
    await serveFirstVersion(t, {
      strategy: 'Linear',
      linear: { stepPercent: 50, intervalSeconds: 10 },
      drainSeconds: 1,
    });
    t.cluster.held.add(resources.endpoint.plural);
    let lagged = 0;
    for (let rollout = 2; rollout <= 101; rollout++) {
      const before = t.endpoint().status!.endpointConfigVersion;
      await t.cluster.put(resources.model, model(`acme/iris:${rollout}`));
      const done = () => {
        const s = t.endpoint().status;
        return s?.endpointConfigVersion !== before && s?.rollout?.phase === 'Promoted' && s.state === 'InService';
      };
      for (let round = 0; round < 40 && !done(); round++) {
        // The watch delivers none, the oldest, or all of the endpoint's pending events.
        const r = random();
        if (r < 0.4) lagged += t.cluster.pendingOf(resources.endpoint) > 0 ? 1 : 0;
        else if (r < 0.7) t.cluster.deliverOldest(resources.endpoint);
        else t.cluster.deliver();
        await t.reconciler.reconcile(key);
        await t.cluster.rollOutDeployments();
        t.advance(random() < 0.5 ? 1 : 6);
      }
      const status = t.endpoint().status!;
      expect(status.rollout, `rollout ${rollout}`).toMatchObject({
        phase: 'Promoted',
        history: [
          { step: 1, weight: 50 },
          { step: 2, weight: 100 },
        ],
      });
    }
    console.log(
      `100 Linear rollouts promoted with their full history; ${lagged} rounds decided while the cache lagged behind a status write`,
    );
    expect(lagged).toBeGreaterThan(50);
  });
});

describe('a weights-only change while a new version is pending', () => {
  it('joins the pending version: the serving one keeps its weights (its snapshot is immutable) until the new one switches in with the new weights', async () => {
    const t = setUp();
    const config = (weights: [number, number]) => ({
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpointConfig',
      metadata: { name: 'iris', namespace },
      spec: {
        models: [
          { model: 'iris', weight: weights[0] },
          { model: 'iris-b', weight: weights[1] },
        ],
      },
    });
    await t.cluster.put(resources.model, model('acme/iris:1'));
    await t.cluster.put(resources.model, { ...model('acme/iris-b:1'), metadata: { name: 'iris-b', namespace } });
    await t.cluster.put(resources.endpointConfig, config([50, 50]));
    await t.cluster.put(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpoint',
      metadata: { name: 'iris', namespace },
      spec: { config: 'iris', rollout: { drainSeconds: 1 } },
    });
    for (let round = 0; round < 10 && t.endpoint().status?.state !== 'InService'; round++) {
      await t.reconciler.reconcile(key);
      await t.cluster.rollOutDeployments();
      t.advance(3);
    }
    const serving = t.endpoint().status!;
    const weights = () => Object.fromEntries((t.endpoint().status!.traffic ?? []).map((x) => [x.variant, x.weight]));
    expect(weights()).toEqual({ iris: 50, 'iris-b': 50 });

    // An image change, whose Deployment does not get ready yet; then the weights change.
    await t.cluster.put(resources.model, model('acme/iris:2'));
    await t.reconciler.reconcile(key);
    const pending = t.endpoint().status!.pendingEndpointConfigVersion;
    expect(pending).toBeDefined();
    await t.cluster.put(resources.endpointConfig, config([90, 10]));
    t.advance(1);
    await t.reconciler.reconcile(key);
    const status = t.endpoint().status!;
    expect(status.endpointConfigVersion).toBe(serving.endpointConfigVersion);
    expect(weights()).toEqual({ iris: 50, 'iris-b': 50 });
    // The pending version is now the image change with the new weights.
    expect(status.pendingEndpointConfigVersion).not.toBe(pending);
    expect(status.preview?.version).toBe(status.pendingEndpointConfigVersion);

    await t.cluster.rollOutDeployments();
    t.advance(1);
    await t.reconciler.reconcile(key);
    expect(t.endpoint().status).toMatchObject({
      state: 'InService',
      endpointConfigVersion: status.pendingEndpointConfigVersion,
    });
    expect(weights()).toEqual({ iris: 90, 'iris-b': 10 });
  });
});
