// A serving version whose snapshots someone deleted by hand while a new version rolls out: the
// endpoint keeps saying what serves, and the rollout completes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess } from '../../ci/cluster/operator.ts';
import { resources } from '../../controller/src/kube/resources.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import {
  admin,
  applyConfig,
  applyEndpoint,
  applyModel,
  inService,
  list,
  runController,
  user,
  waitForEndpoint,
  artifact,
} from './ml.ts';

let namespace: string;
let controller: ControllerProcess;

beforeAll(async () => {
  namespace = await createNamespace(admin, 'snapshots');
  controller = await runController([namespace]);
});
afterAll(async () => {
  await controller?.stop();
  await deleteNamespace(admin, namespace);
});

const model = (image: string, env: Record<string, string> = {}) => ({
  image,
  artifact: artifact('m'),
  readinessPath: '/healthz',
  env: Object.entries(env).map(([name, value]) => ({ name, value })),
});
const names = async (r: (typeof resources)[keyof typeof resources]) =>
  (await list(r, namespace)).map((o) => o.metadata.name).sort();

describe('snapshots deleted by hand', () => {
  it('keep the serving version in status, routed as it was, until a new version replaces it', async () => {
    await applyModel(namespace, 'lost-model', model('acme/lost:1'));
    await applyConfig(namespace, 'lost', { models: [{ model: 'lost-model' }] });
    await applyEndpoint(namespace, 'lost', { config: 'lost' });
    const v1 = await waitForEndpoint(namespace, 'lost', 'InService', inService);
    // The new version gets ready only after 30 s: it rolls out while the snapshots go missing.
    await applyModel(namespace, 'lost-model', model('acme/lost:2', { DEMO_READY_DELAY_SECONDS: '30' }));
    await waitForEndpoint(namespace, 'lost', 'Updating', (x) => x.status?.state === 'Updating');
    const snapshot = (await list(resources.endpointConfig, namespace)).find(
      (c) => c.metadata.labels?.['ml-operator.dev/version'] === v1.status!.endpointConfigVersion,
    )!;
    await user.delete(resources.endpointConfig, namespace, snapshot.metadata.name);
    const e = await waitForEndpoint(namespace, 'lost', 'the missing snapshots reported', (x) =>
      /snapshots are missing/.test(x.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? ''),
    );
    expect(e.status!.endpointConfigVersion).toBe(v1.status!.endpointConfigVersion);
    expect(e.status!.state).toBe('Updating');
    expect(e.status!.traffic!.map((t) => t.service)).toEqual(v1.status!.traffic!.map((t) => t.service));
    expect(await names(resources.deployment)).toEqual(expect.arrayContaining([v1.status!.traffic![0].service]));
    const v2 = await waitForEndpoint(
      namespace,
      'lost',
      'the new version serving',
      (x) => inService(x) && x.status!.endpointConfigVersion !== v1.status!.endpointConfigVersion,
      120_000,
    );
    expect(v2.status!.conditions!.find((c) => c.type === 'Ready')!.message).not.toMatch(/snapshots are missing/);
  });
});
