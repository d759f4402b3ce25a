import { describe, expect, it } from 'vitest';
import { fetcherContainerName } from '../desired/objects.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import { routingProvider } from '../routing/providers.ts';
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { Resolver } from './resolve.ts';
import { resolveTarget } from './target.ts';
import { model, namespace, serveFirstVersion, setUp } from './testing/fixtures.ts';

function resolverOf(t: ReturnType<typeof setUp>) {
  const resolver = new Resolver({ caches: t.cluster.caches, config: t.config, provider: routingProvider(t.config) });
  return {
    resolver,
    /** The target, resolved as desiredState resolves it, from what the resolver reads out of the caches. */
    resolveTarget: (endpoint: MachineLearningEndpoint, now: Date) =>
      resolveTarget(endpoint, resolver.templates(endpoint), t.config, now),
    /** The same, before the upgrade rules pin it. */
    unpinned: (endpoint: MachineLearningEndpoint, now: Date) =>
      resolveTarget(endpoint, { ...resolver.templates(endpoint), pin: (plan) => plan }, t.config, now),
  };
}

describe('resolving what an endpoint asks for', () => {
  it('names what is missing and what to do, once the grace for templates applied along with the endpoint is over', async () => {
    const t = setUp();
    const waitingSince = (seconds: number) => ({
      conditions: [
        {
          type: 'TemplatesAvailable',
          status: 'False',
          reason: 'WaitingForTemplates',
          message: '',
          lastTransitionTime: new Date(t.now().getTime() - seconds * 1000).toISOString(),
        },
      ],
    });
    const endpoint = (spec: Record<string, unknown>, status?: unknown) =>
      ({ metadata: { name: 'iris', namespace }, spec: { config: 'iris', ...spec }, status }) as never;
    const r = resolverOf(t);
    expect(r.resolveTarget(endpoint({}), t.now())).toMatchObject({
      problem: { reason: 'WaitingForTemplates' },
      recheckMs: 30_000,
    });
    expect(r.resolveTarget(endpoint({}, waitingSince(31)), t.now()).problem).toMatchObject({
      reason: 'ConfigNotFound',
      message: expect.stringContaining(`MachineLearningEndpointConfig ${namespace}/iris does not exist`),
    });
    await t.cluster.put(resources.endpointConfig, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpointConfig',
      metadata: { name: 'iris', namespace },
      spec: { models: [{ model: 'iris' }] },
    });
    expect(r.resolveTarget(endpoint({}, waitingSince(31)), t.now()).problem).toMatchObject({
      reason: 'ModelNotFound',
      message: expect.stringContaining(`MachineLearningModel ${namespace}/iris named by config iris does not exist`),
    });
    await t.cluster.put(resources.model, model('acme/iris:1'));
    expect(r.resolveTarget(endpoint({}), t.now()).target?.variants.map((v) => v.model.image)).toEqual(['acme/iris:1']);
    expect(r.resolveTarget(endpoint({ serveVersion: 'nope' }), t.now()).problem).toMatchObject({
      reason: 'VersionNotFound',
    });
  });

  it('keeps the fetcher an instance started with, so that a controller upgrade restarts no model pod', async () => {
    const t = setUp((c) => (c.fetcher.image = 'ml-operator:0.2.0'));
    await serveFirstVersion(t, {});
    const r = resolverOf(t);
    const served = t.cluster.caches.endpoints.get(namespace, 'iris')!;
    const target = r.unpinned(served, t.now()).target!;
    const instance = target.variants[0].instance;
    // What one reconcile read: its pins stay as first read, whatever the caches say later.
    const read = r.resolver.templates(served);
    expect(read.pin(target).variants[0].fetcherImage).toBe('ml-operator:0.2.0');
    // Running: its Deployment's fetcher, whatever the operator's is now.
    const deployment = t.cluster.read<
      KubeObject & {
        spec: { template: { spec: { initContainers: { name: string; image: string; args: string[] }[] } } };
      }
    >(resources.deployment, namespace, instance)!;
    deployment.spec.template.spec.initContainers = deployment.spec.template.spec.initContainers.map((c) =>
      c.name === fetcherContainerName ? { ...c, image: 'ml-operator:0.1.0', args: ['https://x', '/opt/ml/model'] } : c,
    );
    await t.cluster.put(resources.deployment, deployment);
    expect(r.resolver.pinFetcher(namespace, target).variants[0]).toMatchObject({
      fetcherImage: 'ml-operator:0.1.0',
      fetcherFlags: false,
    });
    expect(read.pin(target).variants[0].fetcherImage).toBe('ml-operator:0.2.0');
    expect(r.resolver.templates(served).pin(target).variants[0].fetcherImage).toBe('ml-operator:0.1.0');
    // Not running (scaled away, or a new instance): the current one.
    await t.cluster.delete(resources.deployment, namespace, instance);
    await t.cluster.delete(resources.model, namespace, instance);
    expect(r.resolver.pinFetcher(namespace, target).variants[0].fetcherImage).toBeUndefined();
  });
});
