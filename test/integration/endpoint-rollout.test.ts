// An endpoint's life as a user drives it: created, re-weighted, scaled, given a new model image,
// given a version that can never run, deleted. The controller runs as the chart's ServiceAccount.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess } from '../../ci/cluster/operator.ts';
import { waitFor } from '../../ci/wait.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  getEndpoint,
  inService,
  k8s,
  list,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';

const gcTimeoutMs = 90_000;
let namespace: string;
let controller: ControllerProcess;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'rollout', { 'pod-security.kubernetes.io/enforce': 'restricted' });
  controller = await runController([namespace]);
});
afterAll(async () => {
  await controller?.stop();
  await deleteNamespace(admin, namespace);
});

const model = (image: string, env: Record<string, string> = {}) => ({
  image,
  artifact: 'https://models.example.com/titanic.tar.gz',
  readinessPath: '/ping',
  ...(Object.keys(env).length ? { env: Object.entries(env).map(([name, value]) => ({ name, value })) } : {}),
});
const vsRoutes = async (name: string) => {
  const vs = await user.get<
    KubeObject & {
      spec: {
        http: { name: string; route: { destination: { host: string }; weight: number }[] }[];
        gateways: string[];
        hosts: string[];
      };
    }
  >(resources.virtualService, namespace, name);
  // The split is the route named variants; the ones before it serve requests that name a variant.
  return vs?.spec.http
    .find((h) => h.name === 'variants')!
    .route.map((r) => ({ service: r.destination.host.split('.')[0], weight: r.weight }));
};
const deployments = async () =>
  (await list(resources.deployment, namespace)).map((d) => ({
    name: d.metadata.name,
    uid: d.metadata.uid,
    replicas: (d.spec as { replicas: number }).replicas,
  }));

describe('an endpoint with two variants', () => {
  it('comes InService with one weighted route, owned objects and a traffic table', async () => {
    await applyModel(namespace, 'titanic', model('acme/titanic:1'));
    await applyModel(namespace, 'titanic-v2', model('acme/titanic:2'));
    await applyConfig(namespace, 'titanic', {
      models: [
        { model: 'titanic', weight: 80, cpus: '1', memory: '1Gi' },
        { model: 'titanic-v2', weight: 20, cpus: '500m', memory: '512Mi' },
      ],
    });
    await applyEndpoint(namespace, 'titanic', { config: 'titanic', rollout: { drainSeconds: 2 } });
    const e = await waitForEndpoint(namespace, 'titanic', 'InService', inService);

    const status = e.status!;
    expect(status.endpointConfigVersion).toMatch(/^[0-9a-f]{10}$/);
    expect(status.host).toBe(`titanic.${namespace}.models.example.com`);
    expect(status.url).toBe(`http://titanic.${namespace}.models.example.com`);
    expect(status.ready).toBe('2/2');
    expect(status.traffic!.map((t) => [t.variant, t.weight, t.readyReplicas])).toEqual([
      ['titanic', 80, 1],
      ['titanic-v2', 20, 1],
    ]);
    expect(Object.fromEntries(status.conditions!.map((c) => [c.type, c.status]))).toEqual({
      Ready: 'True',
      Progressing: 'True',
      TemplatesAvailable: 'True',
    });

    expect(await vsRoutes('titanic')).toEqual(status.traffic!.map((t) => ({ service: t.service, weight: t.weight })));
    const gw = await user.get(resources.gateway, namespace, 'titanic-gw');
    expect(gw).toBeDefined();
    for (const r of [
      resources.deployment,
      resources.service,
      resources.gateway,
      resources.virtualService,
      resources.model,
      resources.endpointConfig,
    ]) {
      const owned = (await list(r, namespace)).filter((o) => o.metadata.ownerReferences);
      expect(owned.length, `${r.plural} owned by the endpoint`).toBeGreaterThan(0);
      for (const o of owned) {
        expect(o.metadata.ownerReferences![0]).toMatchObject({
          kind: 'MachineLearningEndpoint',
          name: 'titanic',
          uid: e.metadata.uid,
          controller: true,
        });
        expect(o.metadata.labels).toMatchObject({
          'app.kubernetes.io/managed-by': 'ml-operator',
          'app.kubernetes.io/instance': 'titanic',
          'ml-operator.dev/endpoint': 'titanic',
        });
      }
    }
    const snapshots = (await list(resources.model, namespace)).filter(
      (m) => m.metadata.labels?.['ml-operator.dev/snapshot'] === 'true',
    );
    expect(snapshots.map((m) => (m.status as { endpointConfigVersion: string }).endpointConfigVersion)).toEqual([
      status.endpointConfigVersion,
      status.endpointConfigVersion,
    ]);
  });

  it('re-weights in place: no new Deployment, the VirtualService follows', async () => {
    const before = await deployments();
    await applyConfig(namespace, 'titanic', {
      models: [
        { model: 'titanic', weight: 1, cpus: '1', memory: '1Gi' },
        { model: 'titanic-v2', weight: 1, cpus: '500m', memory: '512Mi' },
      ],
    });
    const e = await waitForEndpoint(
      namespace,
      'titanic',
      'weights 50/50',
      (x) => inService(x) && x.status!.traffic!.every((t) => t.weight === 50),
    );
    expect(await vsRoutes('titanic')).toEqual(e.status!.traffic!.map((t) => ({ service: t.service, weight: 50 })));
    expect(await deployments()).toEqual(before);
  });

  it('scales in place: the same Deployment gets the new replica count', async () => {
    const before = await deployments();
    await applyConfig(namespace, 'titanic', {
      models: [
        { model: 'titanic', weight: 1, instances: 3, cpus: '1', memory: '1Gi' },
        { model: 'titanic-v2', weight: 1, cpus: '500m', memory: '512Mi' },
      ],
    });
    const e = await waitForEndpoint(
      namespace,
      'titanic',
      '4/4 ready',
      (x) => inService(x) && x.status!.ready === '4/4',
    );
    const after = await deployments();
    expect(after.map((d) => [d.name, d.uid])).toEqual(before.map((d) => [d.name, d.uid]));
    expect(after.find((d) => d.name === e.status!.traffic![0].service)!.replicas).toBe(3);
  });

  it('rolls a new model image out blue/green: traffic moves only once the new version is Available', async () => {
    const old = (await getEndpoint(namespace, 'titanic')).status!;
    const oldService = old.traffic![0].service;
    // The new version's server answers its readiness probe only after 20 s: until then its Deployment
    // exists but is not Available.
    await applyModel(namespace, 'titanic', model('acme/titanic:1.1', { DEMO_READY_DELAY_SECONDS: '20' }));

    const updating = await waitForEndpoint(namespace, 'titanic', 'Updating', (x) => x.status?.state === 'Updating');
    const newService = (await deployments())
      .map((d) => d.name)
      .find((n) => n.startsWith('titanic-') && !n.startsWith('titanic-v2') && n !== oldService)!;
    expect(newService).toBeDefined();
    expect(updating.status!.endpointConfigVersion).toBe(old.endpointConfigVersion);
    expect((await vsRoutes('titanic'))!.map((r) => r.service)).toContain(oldService);
    expect(updating.status!.conditions!.find((c) => c.type === 'Progressing')).toMatchObject({
      status: 'True',
      reason: 'NewVersionDeploying',
    });

    const switched = await waitForEndpoint(
      namespace,
      'titanic',
      'switched to the new version',
      (x) => inService(x) && x.status!.endpointConfigVersion !== old.endpointConfigVersion,
      120_000,
    );
    expect(switched.status!.traffic![0].service).toBe(newService);
    expect((await vsRoutes('titanic'))!.map((r) => r.service)).toEqual([newService, old.traffic![1].service]);
    expect(switched.status!.history![0]).toBe(old.endpointConfigVersion);
    await waitFor('the old Deployment and Service to be removed', 30_000, async () => {
      const names = [
        ...(await list(resources.deployment, namespace)),
        ...(await list(resources.service, namespace)),
      ].map((o) => o.metadata.name);
      return names.includes(oldService) ? undefined : true;
    });
    // The previous version's snapshots stay for rollback.
    const snapshots = (await list(resources.endpointConfig, namespace)).map(
      (c) => c.metadata.labels?.['ml-operator.dev/version'],
    );
    expect(snapshots).toEqual(
      expect.arrayContaining([old.endpointConfigVersion, switched.status!.endpointConfigVersion]),
    );
  });

  it('keeps traffic on the serving version when the new one never becomes Available', async () => {
    await applyEndpoint(namespace, 'titanic', {
      config: 'titanic',
      rollout: { drainSeconds: 2, progressDeadlineSeconds: 10 },
    });
    const serving = await waitForEndpoint(namespace, 'titanic', 'InService', inService);
    const before = await deployments();
    // A server that never answers its readiness probe.
    await applyModel(namespace, 'titanic', model('acme/titanic:1.2', { DEMO_READY: 'false' }));
    const failed = await waitForEndpoint(
      namespace,
      'titanic',
      'ProgressDeadlineExceeded',
      (x) => x.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === 'ProgressDeadlineExceeded',
      60_000,
    );
    expect(failed.status!.state).toBe('InService');
    expect(failed.status!.endpointConfigVersion).toBe(serving.status!.endpointConfigVersion);
    expect(failed.status!.conditions!.find((c) => c.type === 'Progressing')!.message).toMatch(
      /did not become Available within 10s.*traffic stays on version/,
    );
    expect((await vsRoutes('titanic'))!.map((r) => r.service)).toEqual(serving.status!.traffic!.map((t) => t.service));
    const after = await deployments();
    for (const d of before) expect(after.find((a) => a.name === d.name)?.uid, `${d.name} kept`).toBe(d.uid);
    const events = await admin
      .makeApiClient(k8s.CoreV1Api)
      .listNamespacedEvent({ namespace, fieldSelector: 'involvedObject.name=titanic' });
    expect(events.items.some((ev) => ev.reason === 'ProgressDeadlineExceeded' && ev.type === 'Warning')).toBe(true);
  });

  it('is removed with everything it created when deleted', async () => {
    await user.delete(resources.endpoint, namespace, 'titanic');
    // kube-controller-manager's garbage collector learns of CRDs installed after it started only at its
    // 30 s discovery resync, so right after start-up collection can take that long.
    await waitFor('garbage collection of the endpoint objects', gcTimeoutMs, async () => {
      const left = [];
      for (const r of [resources.deployment, resources.service, resources.gateway, resources.virtualService])
        left.push(...(await list(r, namespace)));
      left.push(...(await list(resources.model, namespace)).filter((m) => m.metadata.ownerReferences));
      left.push(...(await list(resources.endpointConfig, namespace)).filter((m) => m.metadata.ownerReferences));
      return left.length === 0 ? true : undefined;
    });
    // The user's templates stay.
    expect((await list(resources.model, namespace)).map((m) => m.metadata.name).sort()).toEqual([
      'titanic',
      'titanic-v2',
    ]);
  });
});
