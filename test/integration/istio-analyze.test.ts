// Istio's own analyzers on what the Istio provider writes. Envoy cannot be built here, so the
// routing semantics both providers share are tested with real requests through Traefik
// (traffic.test.ts); the Istio objects are checked by `istioctl analyze` against the live cluster,
// with endpoints in every state: serving, updating, failed, serving with its templates deleted, and
// serving with a shadow mirrored and its variants named by header routes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess } from '../../ci/cluster/operator.ts';
import { resources } from '../../controller/src/kube/resources.ts';
import { analyze, unexplained } from './istio.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  artifact,
  inService,
  k8s,
  runController,
  user,
  waitForEndpoint,
} from './ml.ts';

let namespace: string;
let controller: ControllerProcess;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'istio-analyze');
  controller = await runController([namespace]);
});
afterAll(async () => {
  await controller?.stop();
  await deleteNamespace(admin, namespace);
});

describe('istioctl analyze', () => {
  it('finds nothing wrong with the Gateways and VirtualServices of endpoints in every state', async () => {
    const model = (image: string, env: Record<string, string> = {}) => ({
      image,
      artifact: artifact('istio'),
      readinessPath: '/healthz',
      env: Object.entries(env).map(([name, value]) => ({ name, value })),
    });
    // The default progress deadline while the endpoints are created: a short one would fail a first
    // version that a busy machine starts slowly. Only "failed" gets 10 s, for its new version.
    const rollout = { drainSeconds: 2 };
    for (const name of ['serving', 'updating', 'failed', 'orphaned']) {
      await applyModel(namespace, name, model(`acme/${name}:1`));
      await applyConfig(namespace, name, { models: [{ model: name, weight: 1 }] });
      await applyEndpoint(namespace, name, { config: name, rollout });
    }
    for (const name of ['serving', 'updating', 'failed', 'orphaned'])
      await waitForEndpoint(namespace, name, 'InService', inService, 90_000);

    // Shadowed: a variant named by header routes, and a shadow mirrored a quarter of the requests.
    await applyModel(namespace, 'shadow', model('acme/shadow:1'));
    await applyConfig(namespace, 'shadowed', {
      models: [{ model: 'serving' }, { model: 'shadow', shadow: { percent: 25 } }],
    });
    await applyEndpoint(namespace, 'shadowed', { config: 'shadowed', rollout });
    const shadowed = await waitForEndpoint(
      namespace,
      'shadowed',
      'InService, mirrored',
      (e) => inService(e) && e.status?.shadows?.[0]?.mirrored === true,
      90_000,
    );
    const vs = await user.get<{ metadata: { name: string }; spec: { http: { name: string; mirrors?: unknown[] }[] } }>(
      resources.virtualService,
      namespace,
      'shadowed',
    );
    expect(vs!.spec.http.map((h) => h.name)).toEqual(['variant-serving', 'variants']);
    expect(vs!.spec.http[1].mirrors).toEqual([
      {
        destination: {
          host: `${shadowed.status!.shadows![0].service}.${namespace}.svc.cluster.local`,
          port: { number: 80 },
        },
        percentage: { value: 25 },
      },
    ]);

    // Updating: a new version that takes an hour to get ready.
    await applyModel(namespace, 'updating', model('acme/updating:2', { DEMO_READY_DELAY_SECONDS: '3600' }));
    await waitForEndpoint(namespace, 'updating', 'Updating', (e) => e.status?.state === 'Updating');
    // Failed: a new version that never gets ready, past its deadline.
    await applyEndpoint(namespace, 'failed', {
      config: 'failed',
      rollout: { ...rollout, progressDeadlineSeconds: 10 },
    });
    await applyModel(namespace, 'failed', model('acme/failed:2', { DEMO_READY: 'false' }));
    await waitForEndpoint(
      namespace,
      'failed',
      'ProgressDeadlineExceeded',
      (e) => e.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === 'ProgressDeadlineExceeded',
      60_000,
    );
    // Orphaned: its config and model deleted; it serves from its snapshots.
    await user.delete(resources.endpointConfig, namespace, 'orphaned');
    await user.delete(resources.model, namespace, 'orphaned');
    await waitForEndpoint(
      namespace,
      'orphaned',
      'serving from snapshots',
      (e) => e.status?.conditions?.find((c) => c.type === 'TemplatesAvailable')?.status === 'False',
    );
    // And one whose config never existed: nothing is created for it.
    await applyEndpoint(namespace, 'missing', { config: 'nowhere' });
    await waitForEndpoint(
      namespace,
      'missing',
      'ConfigNotFound',
      (e) => e.status?.conditions?.find((c) => c.type === 'Ready')?.reason === 'ConfigNotFound',
    );

    // A control that shows the analyzers read the VirtualServices: one of the same shape that
    // routes to a Service that does not exist must be reported.
    const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
    await objects.create({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'control', namespace },
      spec: {
        hosts: ['control.example.com'],
        gateways: ['serving-gw'],
        http: [
          {
            name: 'variants',
            route: [
              { destination: { host: `absent.${namespace}.svc.cluster.local`, port: { number: 80 } }, weight: 100 },
            ],
          },
        ],
      },
    });

    const messages = await analyze(namespace);
    process.stdout.write(
      `[istioctl] analyze -n ${namespace}: ${messages.length} message(s)\n${messages.map((m) => `  ${m.level} ${m.code} ${m.origin}: ${m.message ?? ''}`).join('\n')}\n`,
    );
    const control = messages.filter((m) => m.origin === `VirtualService ${namespace}/control`);
    expect(control.map((m) => m.code)).toContain('IST0101');
    // Only what the local cluster cannot satisfy (istio.ts explains each), and nothing else.
    const gateways = ['serving', 'updating', 'failed', 'orphaned', 'shadowed'].map((n) => `${n}-gw`);
    expect(unexplained(messages, namespace, gateways).filter((m) => !control.includes(m))).toEqual([]);
  });
});
