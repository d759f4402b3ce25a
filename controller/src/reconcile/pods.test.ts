import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { labels } from '../desired/labels.ts';
import { fetcherContainerName } from '../desired/objects.ts';
import { resources } from '../kube/resources.ts';
import { PodDiagnostics } from './pods.ts';
import { namespace, setUp } from './testing/fixtures.ts';

const pod = (name: string, status: Record<string, unknown>) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace, labels: { [labels.modelInstance]: 'iris-aa' } },
  spec: {},
  status,
});

async function given() {
  const t = setUp();
  await t.cluster.create(resources.deployment, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'iris-aa', namespace },
    spec: { replicas: 2 },
    status: { readyReplicas: 0 },
  });
  const diagnostics = new PodDiagnostics({
    client: t.cluster,
    caches: t.cluster.caches,
    logger: pino({ level: 'silent' }),
  });
  return { t, diagnostics };
}

describe('pod diagnostics', () => {
  it("say why pods do not run: the scheduler's reason and the artifact fetcher's termination message", async () => {
    const { t, diagnostics } = await given();
    await t.cluster.create(
      resources.pod,
      pod('a', {
        phase: 'Pending',
        conditions: [
          {
            type: 'PodScheduled',
            status: 'False',
            reason: 'Unschedulable',
            message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.',
          },
        ],
      }),
    );
    await t.cluster.create(
      resources.pod,
      pod('b', {
        phase: 'Pending',
        initContainerStatuses: [
          {
            name: fetcherContainerName,
            lastState: {
              terminated: { exitCode: 1, message: 's3://models/iris.tar.gz: 403 Forbidden: check the role' },
            },
          },
        ],
      }),
    );
    const found = await diagnostics.problems(namespace, ['iris-aa'], t.now());
    expect(found.conditions).toEqual([
      {
        type: 'PodsScheduled',
        status: 'False',
        reason: 'Unschedulable',
        message: 'iris-aa: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.',
      },
      {
        type: 'ArtifactsFetched',
        status: 'False',
        reason: 'FetchFailed',
        message: 'iris-aa: s3://models/iris.tar.gz: 403 Forbidden: check the role',
      },
    ]);
    expect(found.recheckMs).toBe(10_000);
  });

  it('list pods at most every 10 s per instance, and not at all once every replica is ready', async () => {
    const { t, diagnostics } = await given();
    await diagnostics.problems(namespace, ['iris-aa'], t.now());
    t.advance(5);
    await diagnostics.problems(namespace, ['iris-aa'], t.now());
    expect(t.cluster.lists).toBe(1);
    t.advance(5);
    await diagnostics.problems(namespace, ['iris-aa'], t.now());
    expect(t.cluster.lists).toBe(2);
    // From the API server's watch cache: a diagnosis read again in 10 s needs no read of etcd.
    expect(t.cluster.cachedLists).toBe(2);
    await t.cluster.applyStatus(resources.deployment, {
      metadata: { name: 'iris-aa', namespace },
      status: { readyReplicas: 2 },
    });
    t.advance(20);
    expect(await diagnostics.problems(namespace, ['iris-aa'], t.now())).toEqual({ conditions: [] });
    expect(t.cluster.lists).toBe(2);
  });
});
