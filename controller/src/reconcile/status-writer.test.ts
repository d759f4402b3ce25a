import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointStatus } from '../api/generated.ts';
import { resources } from '../kube/resources.ts';
import { StatusWriter } from './status-writer.ts';
import { namespace, setUp } from './testing/fixtures.ts';

const condition = (type: string, status: 'True' | 'False', reason: string) => ({
  type,
  status,
  reason,
  message: reason,
  lastTransitionTime: '2026-01-01T00:00:00Z',
});
const creating = (ready: string): MachineLearningEndpointStatus => ({
  state: 'Creating',
  ready,
  conditions: [condition('Ready', 'False', 'Creating')],
});

async function given() {
  const t = setUp();
  await t.cluster.put(resources.endpoint, {
    apiVersion: 'ml-operator.dev/v1alpha1',
    kind: 'MachineLearningEndpoint',
    metadata: { name: 'iris', namespace },
    spec: { config: 'iris' },
  });
  const writer = new StatusWriter({ client: t.cluster, caches: t.cluster.caches, events: t.recorder, now: t.now });
  const endpoint = () => writer.view('models/iris', t.cluster.caches.endpoints.get(namespace, 'iris')!);
  const statusWrites = () => t.cluster.writes.filter((w) => w.verb === 'status').length;
  return { t, writer, endpoint, statusWrites };
}

describe('the status writer', () => {
  it("puts a first version's progress off for 2 s, then writes the latest; a serving status at once", async () => {
    const { t, writer, endpoint, statusWrites } = await given();
    expect(await writer.write(endpoint(), creating('0/2'))).toBe(2000);
    t.advance(1);
    expect(await writer.write(endpoint(), creating('1/2'))).toBe(1000);
    expect(statusWrites()).toBe(0);
    t.advance(1);
    expect(await writer.write(endpoint(), creating('1/2'))).toBeUndefined();
    expect(statusWrites()).toBe(1);
    expect(t.endpoint().status?.ready).toBe('1/2');
    await writer.write(endpoint(), {
      state: 'InService',
      endpointConfigVersion: 'v1',
      ready: '2/2',
      conditions: [condition('Ready', 'True', 'Serving')],
    });
    expect(statusWrites()).toBe(2);
    // Nothing new: no write.
    await writer.write(endpoint(), {
      state: 'InService',
      endpointConfigVersion: 'v1',
      ready: '2/2',
      conditions: [condition('Ready', 'True', 'Serving')],
    });
    expect(statusWrites()).toBe(2);
  });

  it('records one Warning per condition that turns bad, none for bringing up a first version', async () => {
    const { t, writer, endpoint } = await given();
    t.advance(5);
    await writer.write(endpoint(), creating('0/1'));
    const failing = {
      state: 'InService' as const,
      endpointConfigVersion: 'v1',
      conditions: [condition('Ready', 'True', 'Serving'), condition('Progressing', 'False', 'AnalysisFailed')],
    };
    await writer.write(endpoint(), failing);
    await writer.write(endpoint(), { ...failing, ready: '1/1' });
    expect(t.events).toEqual([{ type: 'Warning', reason: 'AnalysisFailed', message: 'AnalysisFailed' }]);
  });

  it("writes a snapshot's status once, even while the cache does not show the write yet", async () => {
    const { t, writer } = await given();
    await t.cluster.put(resources.endpointConfig, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpointConfig',
      metadata: { name: 'iris-v1', namespace },
      spec: { models: [] },
    });
    t.cluster.held.add(resources.endpointConfig.plural);
    const plan = { config: 'iris', spec: { models: [] }, version: 'v1', instance: 'iris-v1', variants: [] };
    await writer.writeSnapshotStatuses('models/iris', namespace, [plan]);
    await writer.writeSnapshotStatuses('models/iris', namespace, [plan]);
    expect(
      t.cluster.writes.filter((w) => w.verb === 'status' && w.plural === resources.endpointConfig.plural),
    ).toHaveLength(1);
    // Recreated under the same name (a new uid): written again.
    t.cluster.held.clear();
    t.cluster.deliver();
    await t.cluster.delete(resources.endpointConfig, namespace, 'iris-v1');
    await t.cluster.put(resources.endpointConfig, {
      apiVersion: 'ml-operator.dev/v1alpha1',
      kind: 'MachineLearningEndpointConfig',
      metadata: { name: 'iris-v1', namespace },
      spec: { models: [] },
    });
    await writer.writeSnapshotStatuses('models/iris', namespace, [plan]);
    expect(
      t.cluster.writes.filter((w) => w.verb === 'status' && w.plural === resources.endpointConfig.plural),
    ).toHaveLength(2);
  });

  it("records a transition's Event only once its status is written: none for a refused write, one when it is written", async () => {
    const { t, writer, endpoint } = await given();
    const failing = {
      state: 'Failed' as const,
      ready: '0/1',
      conditions: [condition('Ready', 'False', 'ProgressDeadlineExceeded')],
    };
    const applyStatus = t.cluster.applyStatus.bind(t.cluster);
    const eventsAtWrite: number[] = [];
    let refuse = true;
    t.cluster.applyStatus = async (r, obj) => {
      eventsAtWrite.push(t.events.length);
      if (refuse) throw Object.assign(new Error('the API server is unavailable'), { code: 503 });
      return applyStatus(r, obj);
    };
    await expect(writer.write(endpoint(), failing)).rejects.toThrow('unavailable');
    expect(t.events).toEqual([]);
    refuse = false;
    expect(await writer.write(endpoint(), failing)).toBeUndefined();
    // Whoever sees the Event reads the status that says it.
    expect(eventsAtWrite).toEqual([0, 0]);
    expect(t.events).toEqual([
      { type: 'Warning', reason: 'ProgressDeadlineExceeded', message: 'ProgressDeadlineExceeded' },
    ]);
  });
});
