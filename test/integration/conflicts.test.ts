// Objects the controller does not own, and hosts another endpoint holds: the controller refuses to
// write over a user's object of the name it wants (OwnershipConflict, the object left as it was),
// and of two endpoints that claim one host, the later routes nothing (HostConflict), while the
// first keeps all of that host's traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import type {
  MachineLearningEndpointConfigSpec,
  MachineLearningModelSpec,
} from '../../controller/src/api/generated.ts';
import { planFromTemplates } from '../../controller/src/desired/plan.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { httpRouteResource } from '../../controller/src/routing/gateway-api.ts';
import { waitFor } from '../../ci/wait.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  getEndpoint,
  inService,
  k8s,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';
import { expectServed, installGatewayRelease, load, printReport, uninstallRelease, waitForGateway } from './traffic.ts';
import { servedModel } from './fixtures.ts';

let namespace: string;
let release: Release;
let controller: ControllerProcess;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'conflicts');
  release = await installGatewayRelease(namespace, 'shared');
  controller = await runController([namespace], { release });
});
afterAll(async () => {
  await controller?.stop();
  await deleteNamespace(admin, namespace);
  if (release) await uninstallRelease(release);
});

const reason = (e: { status?: { conditions?: { type: string; reason: string }[] } }, type: string) =>
  e.status?.conditions?.find((c) => c.type === type)?.reason;
const model = servedModel('conflicts');

describe('objects the controller does not own', () => {
  it('a user HTTPRoute with the name the endpoint wants: OwnershipConflict, the route left as it was, nothing served', async () => {
    const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
    const theirs = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'taken', namespace, labels: { team: 'web' } },
      spec: { hostnames: ['web.example.com'], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] },
    };
    await objects.create(theirs);
    const before = await user.get<KubeObject>(httpRouteResource, namespace, 'taken');
    await applyModel(namespace, 'taken', model('acme/taken:1'));
    await applyConfig(namespace, 'taken', { models: [{ model: 'taken' }] });
    await applyEndpoint(namespace, 'taken', { config: 'taken' });
    const e = await waitForEndpoint(
      namespace,
      'taken',
      'OwnershipConflict',
      (x) => reason(x, 'Ready') === 'OwnershipConflict',
      60_000,
    );
    expect(e.status!.state).toBe('Failed');
    expect(e.status!.conditions!.find((c) => c.type === 'Ready')!.message).toContain(
      `HTTPRoute ${namespace}/taken exists and does not belong to this endpoint`,
    );
    expect(e.status!.conditions!.find((c) => c.type === 'ResourcesOwned')).toMatchObject({
      status: 'False',
      reason: 'OwnershipConflict',
    });
    const after = await user.get<KubeObject>(httpRouteResource, namespace, 'taken');
    expect(after!.metadata.resourceVersion).toBe(before!.metadata.resourceVersion);
    expect(after!.metadata.ownerReferences).toBeUndefined();
    const events = await admin
      .makeApiClient(k8s.CoreV1Api)
      .listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.name=taken' });
    expect(events.items.some((ev) => ev.reason === 'OwnershipConflict' && ev.type === 'Warning')).toBe(true);

    // Once the user removes theirs, the endpoint serves.
    await user.delete(httpRouteResource, namespace, 'taken');
    await waitForEndpoint(namespace, 'taken', 'InService once the name is free', inService, 60_000);
  });

  it("a user Service with the name of the next version's instance: the rollout waits, the Service untouched, traffic stays", async () => {
    await applyModel(namespace, 'svc', model('acme/svc:1'));
    await applyConfig(namespace, 'svc', { models: [{ model: 'svc' }] });
    await applyEndpoint(namespace, 'svc', { config: 'svc', rollout: { drainSeconds: 2 } });
    const serving = await waitForEndpoint(namespace, 'svc', 'InService', inService, 60_000);
    // Instance names are content hashes of the specs as stored (defaults filled in): the next
    // version's is known before it exists. Take it first.
    const storedModel = await user.get<KubeObject & { spec: MachineLearningModelSpec }>(
      resources.model,
      namespace,
      'svc',
    );
    const storedConfig = await user.get<KubeObject & { spec: MachineLearningEndpointConfigSpec }>(
      resources.endpointConfig,
      namespace,
      'svc',
    );
    const next = planFromTemplates(
      'svc',
      'svc',
      storedConfig!.spec,
      new Map([['svc', { ...storedModel!.spec, image: 'acme/svc:2' }]]),
    );
    if (!next.ok) throw new Error('unresolved');
    const taken = next.plan.variants[0].instance;
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const theirs = await core.createNamespacedService({
      namespace,
      body: { metadata: { name: taken }, spec: { selector: { app: 'theirs' }, ports: [{ port: 80 }] } },
    });
    await applyModel(namespace, 'svc', model('acme/svc:2'));
    const waiting = await waitForEndpoint(
      namespace,
      'svc',
      'the conflict reported',
      (x) => reason(x, 'ResourcesOwned') === 'OwnershipConflict',
      60_000,
    );
    expect(waiting.status!.conditions!.find((c) => c.type === 'ResourcesOwned')!.message).toContain(
      `Service ${namespace}/${taken} exists and does not belong to this endpoint`,
    );
    expect(waiting.status!.endpointConfigVersion).toBe(serving.status!.endpointConfigVersion);
    expect(waiting.status!.state).toBe('Updating');
    const still = await core.readNamespacedService({ name: taken, namespace });
    expect(still.metadata!.resourceVersion).toBe(theirs.metadata!.resourceVersion);
    expect(still.spec!.selector).toEqual({ app: 'theirs' });

    await core.deleteNamespacedService({ name: taken, namespace });
    const switched = await waitForEndpoint(
      namespace,
      'svc',
      'v2 serving once the name is free',
      (x) => inService(x) && x.status!.endpointConfigVersion === next.plan.version,
      60_000,
    );
    expect(switched.status!.traffic![0].service).toBe(taken);
  });
});

describe('two endpoints that claim one host', () => {
  it('the later one routes nothing, and all of the host goes to the first', async () => {
    await applyModel(namespace, 'first', model('acme/first:1'));
    await applyConfig(namespace, 'first', { models: [{ model: 'first' }] });
    await applyEndpoint(namespace, 'first', { config: 'first', host: `shared.${namespace}.example.com` });
    const first = await waitForEndpoint(namespace, 'first', 'InService', inService, 60_000);
    await waitForGateway(`shared.${namespace}.example.com`);
    await applyModel(namespace, 'second', model('acme/second:1'));
    await applyConfig(namespace, 'second', { models: [{ model: 'second' }] });
    await applyEndpoint(namespace, 'second', { config: 'second', host: `shared.${namespace}.example.com` });
    const second = await waitForEndpoint(
      namespace,
      'second',
      'HostConflict',
      (x) => reason(x, 'Ready') === 'HostConflict',
      60_000,
    );
    expect(second.status!.conditions!.find((c) => c.type === 'Ready')!.message).toContain(
      `already served by endpoint ${namespace}/first`,
    );
    expect(await user.get(httpRouteResource, namespace, 'second')).toBeUndefined();

    const run = load(`shared.${namespace}.example.com`, { requests: 500, concurrency: 8, maxDurationMs: 30_000 });
    const r = await run.done;
    printReport('a host claimed twice', r);
    // Only the endpoint that holds the host answers: an answer of the other one's would be a failure.
    expectServed(run, { backends: [first.status!.traffic![0].service], namespace });

    // An endpoint that served on a host of its own, moved onto the held one, loses its route.
    await applyEndpoint(namespace, 'third', { config: 'second', host: `third.${namespace}.example.com` });
    await waitForEndpoint(namespace, 'third', 'InService', inService, 60_000);
    expect(await user.get(httpRouteResource, namespace, 'third')).toBeDefined();
    await applyEndpoint(namespace, 'third', { config: 'second', host: `shared.${namespace}.example.com` });
    await waitForEndpoint(namespace, 'third', 'HostConflict', (x) => reason(x, 'Ready') === 'HostConflict', 60_000);
    await waitFor("third's HTTPRoute removed", 30_000, async () =>
      (await user.get(httpRouteResource, namespace, 'third')) ? undefined : true,
    );
    await user.delete(resources.endpoint, namespace, 'third');

    // The first lets go of the host: the second takes it.
    await user.delete(resources.endpoint, namespace, 'first');
    const taken = await waitForEndpoint(namespace, 'second', 'InService with the host', inService, 60_000);
    expect(taken.status!.host).toBe(`shared.${namespace}.example.com`);
    expect((await getEndpoint(namespace, 'second')).status!.state).toBe('InService');
  });
});
