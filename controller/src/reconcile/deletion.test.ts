import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { drainFinalizer } from '../desired/labels.ts';
import { KubeError } from '../kube/errors.ts';
import { resources } from '../kube/resources.ts';
import { routingProvider } from '../routing/providers.ts';
import { EndpointReconciler } from './endpoint.ts';
import { createEndpoint, key, namespace, serveFirstVersion, setUp } from './testing/fixtures.ts';

describe('deleting an endpoint', () => {
  it('takes the route away first and keeps the model serving for drainSeconds, then lets the endpoint go', async () => {
    const t = setUp();
    await serveFirstVersion(t, { drainSeconds: 20 });
    expect(t.endpoint().metadata.finalizers).toEqual([drainFinalizer]);
    const route = routingProvider(t.config).kinds.route;
    const routes = () => t.cluster.list_(route).filter((r) => r.metadata.namespace === namespace);
    const workloads = () =>
      [resources.deployment, resources.service].flatMap((r) => t.cluster.list_(r)).map((o) => o.metadata.name);
    expect(routes()).toHaveLength(1);
    const serving = workloads();
    expect(serving.length).toBeGreaterThanOrEqual(2);

    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 20_000 });
    // The gateway no longer routes the host (its 404), while the model's Deployment and Service serve on.
    expect(routes()).toEqual([]);
    expect(workloads()).toEqual(serving);
    expect(t.endpoint().status?.state).toBe('Deleting');
    expect(t.endpoint().metadata.finalizers).toEqual([drainFinalizer]);

    // Woken early (a pod event, say): it waits out the rest.
    t.advance(15);
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 5000 });
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeDefined();

    t.advance(5);
    expect(await t.reconciler.reconcile(key)).toBeUndefined();
    // The finalizer lifted: the endpoint is gone, and the garbage collector takes what it owned.
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeUndefined();
  });

  it('drains for drainSeconds after it takes the route away, however late it first sees the deletion', async () => {
    const t = setUp();
    await serveFirstVersion(t, { drainSeconds: 20 });
    const route = routingProvider(t.config).kinds.route;
    const routes = () => t.cluster.list_(route).filter((r) => r.metadata.namespace === namespace);
    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    // The controller was down (or the key backing off) for a minute after the delete.
    t.advance(60);
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 20_000 });
    expect(routes()).toEqual([]);
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeDefined();
    t.advance(20);
    expect(await t.reconciler.reconcile(key)).toBeUndefined();
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeUndefined();
  });

  it('goes on with a drain a restarted controller finds half done, from the Deleting condition', async () => {
    const t = setUp();
    await serveFirstVersion(t, { drainSeconds: 20 });
    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 20_000 });
    expect(t.endpoint().status?.conditions?.find((c) => c.type === 'Deleting')).toMatchObject({
      status: 'True',
      reason: 'Draining',
      lastTransitionTime: t.now().toISOString(),
    });
    t.advance(15);
    const restarted = new EndpointReconciler({
      client: t.cluster,
      caches: t.cluster.caches,
      config: t.config,
      events: t.recorder,
      logger: pino({ level: 'silent' }),
      now: t.now,
    });
    expect(await restarted.reconcile(key)).toEqual({ requeueAfterMs: 5000 });
    t.advance(5);
    expect(await restarted.reconcile(key)).toBeUndefined();
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeUndefined();
  });

  it('drains again from when it removes a route its cache saw only after the drain began', async () => {
    const t = setUp();
    const route = routingProvider(t.config).kinds.route;
    const routes = () => t.cluster.list_(route).filter((r) => r.metadata.namespace === namespace);
    await createEndpoint(t, { drainSeconds: 20 });
    // The route watch is behind: the controller writes the first version's route, its cache has not
    // seen it yet when the endpoint is deleted.
    t.cluster.held.add(route.plural);
    for (let round = 0; round < 10 && routes().length === 0; round++) {
      await t.reconciler.reconcile(key);
      await t.cluster.rollOutDeployments();
      t.advance(3);
    }
    expect(routes()).toHaveLength(1);
    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 20_000 });
    // The watch catches up during the drain; the next pass finds the route and removes it.
    t.cluster.held.delete(route.plural);
    t.cluster.deliver();
    t.advance(20);
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 20_000 });
    expect(routes()).toEqual([]);
    // The model pods serve on for drainSeconds from then, not from the first pass.
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeDefined();
    expect(t.endpoint().status?.conditions?.find((c) => c.type === 'Deleting')?.lastTransitionTime).toBe(
      t.now().toISOString(),
    );
    t.advance(20);
    expect(await t.reconciler.reconcile(key)).toBeUndefined();
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeUndefined();
  });

  it('lets an endpoint that never served go at once: there is nothing to drain', async () => {
    const t = setUp();
    // Its config does not exist: it never had a version, a route or a pod.
    await t.cluster.put(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpoint',
      metadata: { name: 'iris', namespace },
      spec: { config: 'missing', rollout: { drainSeconds: 20 } },
    });
    await t.reconciler.reconcile(key);
    expect(t.endpoint().metadata.finalizers).toEqual([drainFinalizer]);
    expect(t.endpoint().status?.conditions?.find((c) => c.type === 'TemplatesAvailable')?.reason).toBe(
      'WaitingForTemplates',
    );
    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    expect(await t.reconciler.reconcile(key)).toBeUndefined();
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeUndefined();
  });

  it('does not fail on an endpoint its cache shows alive and without the finalizer, already deleted or being deleted', async () => {
    for (const finalizers of [[], ['example.com/other']]) {
      const t = setUp();
      t.cluster.held.add(resources.endpoint.plural);
      await t.cluster.put(resources.endpoint, {
        apiVersion: 'ml-operator.dev/v1alpha1',
        kind: 'MachineLearningEndpoint',
        metadata: { name: 'iris', namespace, finalizers },
        spec: { config: 'missing' },
      });
      t.cluster.deliver();
      // Deleted before the controller put its finalizer on: gone at once, or held by another's.
      await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
      expect(t.cluster.pendingOf(resources.endpoint)).toBe(1);
      // The deletion's event will bring it back; until then there is nothing to do and nothing failed.
      expect(await t.reconciler.reconcile(key)).toBeUndefined();
      expect(t.cluster.read(resources.endpoint, namespace, 'iris')?.metadata.finalizers).toEqual(
        finalizers.length ? finalizers : undefined,
      );
    }
  });

  it('drains an endpoint whose route its cache has not seen and whose status never named a version', async () => {
    const t = setUp();
    const route = routingProvider(t.config).kinds.route;
    const routes = () => t.cluster.list_(route).filter((r) => r.metadata.namespace === namespace);
    await createEndpoint(t, { drainSeconds: 20 });
    t.cluster.held.add(route.plural);
    for (let round = 0; round < 10 && routes().length === 0; round++) {
      await t.reconciler.reconcile(key);
      await t.cluster.rollOutDeployments();
      t.advance(3);
    }
    expect(routes()).toHaveLength(1);
    // The status write that would name the serving version never happened (the write failed).
    await t.cluster.applyStatus(resources.endpoint, { ...t.endpoint(), status: {} });
    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 20_000 });
    expect(routes()).toEqual([]);
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeDefined();
  });

  it('lets a first version that never became ready go at once, its gateway with it', async () => {
    const t = setUp();
    await createEndpoint(t, { drainSeconds: 20 });
    // Its Deployments never roll out: the version stays Creating.
    await t.reconciler.reconcile(key);
    const gateway = routingProvider(t.config).kinds.gateway!;
    expect(t.cluster.list_(gateway)).toHaveLength(1);
    expect(t.cluster.list_(routingProvider(t.config).kinds.route)).toEqual([]);
    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    expect(await t.reconciler.reconcile(key)).toBeUndefined();
    expect(t.cluster.read(resources.endpoint, namespace, 'iris')).toBeUndefined();
    expect(t.cluster.list_(gateway)).toEqual([]);
  });

  it('does not start the drain again for a route another finalizer keeps while it is deleted', async () => {
    const t = setUp();
    await serveFirstVersion(t, { drainSeconds: 20 });
    const route = routingProvider(t.config).kinds.route;
    const [live] = t.cluster.list_(route).filter((r) => r.metadata.namespace === namespace);
    // The data plane's controller holds the route until it has torn down what it made for it.
    await t.cluster.apply(route, { ...live, metadata: { ...live.metadata, finalizers: ['example.com/lb'] } });
    await t.cluster.requestDelete(resources.endpoint, namespace, 'iris');
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 20_000 });
    const writes = t.cluster.writes.length;
    // Woken by its own status write a second later: the route, marked deleted, is left alone.
    t.advance(1);
    expect(await t.reconciler.reconcile(key)).toEqual({ requeueAfterMs: 19_000 });
    expect(t.cluster.writes.slice(writes)).toEqual([]);
  });

  it('fails the reconcile on a refused finalizer of an endpoint that is live', async () => {
    const t = setUp();
    t.cluster.refuse = (r, applied, live) =>
      r === resources.endpoint && live && applied.metadata.finalizers
        ? new KubeError('admission webhook "policy.example.com" denied the request: no finalizers', 422, 'Invalid')
        : undefined;
    await t.cluster.put(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpoint',
      metadata: { name: 'iris', namespace },
      spec: { config: 'missing' },
    });
    await expect(t.reconciler.reconcile(key)).rejects.toThrow(/admission webhook/);
  });

  it('puts the finalizer on an endpoint that lacks it (one made before it existed), and only once', async () => {
    const t = setUp();
    await serveFirstVersion(t, {});
    await t.cluster.apply(resources.endpoint, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpoint',
      metadata: { name: 'iris', namespace, finalizers: [] },
    });
    expect(t.endpoint().metadata.finalizers).toEqual([]);
    await t.reconciler.reconcile(key);
    expect(t.endpoint().metadata.finalizers).toEqual([drainFinalizer]);
    const writes = t.cluster.writes.length;
    await t.reconciler.reconcile(key);
    expect(t.cluster.writes.filter((w) => w.plural === resources.endpoint.plural).length).toBe(
      t.cluster.writes.slice(0, writes).filter((w) => w.plural === resources.endpoint.plural).length,
    );
  });
});
