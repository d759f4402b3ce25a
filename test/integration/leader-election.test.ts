// Two controller replicas: only the leader reconciles; when it dies, the other takes over within
// the lease duration.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess } from '../../ci/cluster/operator.ts';
import { waitFor } from '../../ci/wait.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import { admin, applyConfig, applyEndpoint, applyModel, inService, runController, waitForEndpoint } from './ml.ts';

let namespace: string;
const replicas: ControllerProcess[] = [];

beforeAll(async () => {
  namespace = await createNamespace(admin, 'leader');
});
afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await deleteNamespace(admin, namespace);
});

const reconciles = async (c: ControllerProcess) => {
  const text = await c.metrics();
  return [...text.matchAll(/^ml_operator_reconcile_total\{result="[a-z]+"\} (\d+)/gm)].reduce(
    (n, m) => n + Number(m[1]),
    0,
  );
};
const isLeader = async (c: ControllerProcess) => /^ml_operator_leader 1$/m.test(await c.metrics());

describe('two controller replicas', () => {
  it('only the leader reconciles, and a standby takes over within the lease time when the leader dies', async () => {
    replicas.push(await runController([namespace], { leaderElect: true, identity: `a-${namespace}` }));
    replicas.push(await runController([namespace], { leaderElect: true, identity: `b-${namespace}` }));
    const leader = await waitFor('one replica to lead', 30_000, async () => {
      const leading = [];
      for (const r of replicas) if (await isLeader(r)) leading.push(r);
      return leading.length === 1 ? leading[0] : undefined;
    });
    const standby = replicas.find((r) => r !== leader)!;

    await applyModel(namespace, 'm', { image: 'acme/m:1' });
    await applyConfig(namespace, 'c', { models: [{ model: 'm' }] });
    await applyEndpoint(namespace, 'e', { config: 'c' });
    await waitForEndpoint(namespace, 'e', 'InService', inService);
    expect(await reconciles(leader)).toBeGreaterThan(0);
    expect(await reconciles(standby)).toBe(0);
    expect(await isLeader(standby)).toBe(false);

    const killedAt = Date.now();
    await leader.kill();
    await waitFor('the standby to lead', 30_000, async () => ((await isLeader(standby)) ? true : undefined));
    const handover = Date.now() - killedAt;
    // The lease expires 15 s after the standby last saw it renewed, which can be one 2 s retry
    // period after the crash; the standby notices within one more retry period. Margin: 4 s.
    expect(handover).toBeLessThan(15_000 + 2 * 2_000 + 4_000);
    await applyModel(namespace, 'm', { image: 'acme/m:2' });
    await waitFor('the new leader to reconcile', 30_000, async () =>
      (await reconciles(standby)) > 0 ? true : undefined,
    );
  });
});
