// Given/when/then for the reconciler's tests: an in-memory cluster (fake-cluster.ts) with a clock the
// test moves, the reconciler over it, and the Events it recorded; models and endpoints as a user
// writes them.
import { pino } from 'pino';
import type { MachineLearningEndpointStatus } from '../../api/generated.ts';
import { resources, type KubeObject } from '../../kube/resources.ts';
import { defaultConfig, type OperatorConfig } from '../../options/config.ts';
import type { EventRecorder } from '../../runtime/events.ts';
import { EndpointReconciler } from '../endpoint.ts';
import { FakeCluster } from './fake-cluster.ts';

export const namespace = 'models';
export const key = `${namespace}/iris`;

export function setUp(configure: (c: OperatorConfig) => void = () => {}) {
  const config = structuredClone(defaultConfig);
  configure(config);
  const cluster = new FakeCluster(config);
  let now = new Date('2026-01-01T00:00:00Z');
  cluster.now = () => now;
  const events: { type: string; reason: string; message: string }[] = [];
  const recorder = {
    record: (_o: unknown, type: string, reason: string, message: string) => events.push({ type, reason, message }),
  } as unknown as EventRecorder;
  const reconciler = new EndpointReconciler({
    client: cluster,
    caches: cluster.caches,
    config,
    events: recorder,
    logger: pino({ level: 'silent' }),
    now: () => now,
  });
  return {
    config,
    recorder,
    cluster,
    reconciler,
    events,
    now: () => now,
    advance: (seconds: number) => (now = new Date(now.getTime() + seconds * 1000)),
    endpoint: () =>
      cluster.read<KubeObject & { status?: MachineLearningEndpointStatus }>(resources.endpoint, namespace, 'iris')!,
  };
}

export const model = (image: string) => ({
  apiVersion: 'ml-operator.dev/v1alpha1',
  kind: 'MachineLearningModel',
  metadata: { name: 'iris', namespace },
  spec: { image, artifact: 'https://models.example.com/iris.tar.gz' },
});

/** The model `iris`, a config serving it and the endpoint `iris` on it, as a user applies them. */
export async function createEndpoint(t: ReturnType<typeof setUp>, rollout: Record<string, unknown>) {
  await t.cluster.put(resources.model, model('acme/iris:1'));
  await t.cluster.put(resources.endpointConfig, {
    apiVersion: 'ml-operator.dev/v1alpha1',
    kind: 'MachineLearningEndpointConfig',
    metadata: { name: 'iris', namespace },
    spec: { models: [{ model: 'iris', weight: 1 }] },
  });
  await t.cluster.put(resources.endpoint, {
    apiVersion: 'ml-operator.dev/v1alpha1',
    kind: 'MachineLearningEndpoint',
    metadata: { name: 'iris', namespace },
    spec: { config: 'iris', rollout },
  });
}

export async function serveFirstVersion(t: ReturnType<typeof setUp>, rollout: Record<string, unknown>) {
  await createEndpoint(t, rollout);
  for (let round = 0; round < 10 && t.endpoint().status?.state !== 'InService'; round++) {
    await t.reconciler.reconcile(key);
    await t.cluster.rollOutDeployments();
    t.advance(3);
  }
  if (t.endpoint().status?.state !== 'InService')
    throw new Error(`the first version is not InService: ${JSON.stringify(t.endpoint().status, null, 1)}`);
}
