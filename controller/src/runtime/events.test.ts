import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { KubeClient } from '../kube/client.ts';
import type { KubeObject, Resource } from '../kube/resources.ts';
import { EventRecorder } from './events.ts';

const endpoint = {
  apiVersion: 'ml-operator.dev/v1alpha1',
  kind: 'MachineLearningEndpoint',
  metadata: { name: 'iris', namespace: 'models', uid: 'uid-1', resourceVersion: '42' },
};

function setup(create: (r: Resource, obj: KubeObject) => Promise<KubeObject> = async (_r, obj) => obj) {
  const created: { r: Resource; obj: any }[] = [];
  const logs: { msg: string }[] = [];
  const client = {
    create: (r: Resource, obj: KubeObject) => {
      created.push({ r, obj });
      return create(r, obj);
    },
  } as unknown as KubeClient;
  const recorder = new EventRecorder(client, {
    component: 'ml-operator',
    host: 'replica-1',
    logger: pino({}, { write: (l: string) => logs.push(JSON.parse(l)) }),
  });
  return { created, logs, recorder };
}

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2030-01-02T03:04:05.678Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('EventRecorder', () => {
  it('posts a core/v1 Event about the object', () => {
    const { created, recorder } = setup();
    recorder.record(endpoint, 'Normal', 'VersionSwitched', 'serving config version 2');
    expect(created).toHaveLength(1);
    expect(created[0].r).toMatchObject({ group: '', version: 'v1', plural: 'events' });
    const event = created[0].obj;
    expect(event.metadata.name).toMatch(/^iris\.[0-9a-f]{16}$/);
    expect(event).toEqual({
      metadata: { name: event.metadata.name, namespace: 'models' },
      involvedObject: {
        apiVersion: 'ml-operator.dev/v1alpha1',
        kind: 'MachineLearningEndpoint',
        name: 'iris',
        namespace: 'models',
        uid: 'uid-1',
        resourceVersion: '42',
      },
      type: 'Normal',
      reason: 'VersionSwitched',
      message: 'serving config version 2',
      firstTimestamp: '2030-01-02T03:04:05Z',
      lastTimestamp: '2030-01-02T03:04:05Z',
      count: 1,
      source: { component: 'ml-operator', host: 'replica-1' },
      reportingComponent: 'ml-operator',
      reportingInstance: 'replica-1',
    });
  });

  it('gives every event a name of its own', () => {
    const { created, recorder } = setup();
    recorder.record(endpoint, 'Normal', 'A', 'one');
    recorder.record(endpoint, 'Normal', 'A', 'two');
    expect(created[0].obj.metadata.name).not.toBe(created[1].obj.metadata.name);
  });

  it('suppresses a repeat of the same event for 10 minutes', () => {
    const { created, recorder } = setup();
    for (let i = 0; i < 100; i++) recorder.record(endpoint, 'Warning', 'ReconcileError', 'boom');
    recorder.record(endpoint, 'Warning', 'ReconcileError', 'another message');
    recorder.record(
      { ...endpoint, metadata: { ...endpoint.metadata, name: 'other', uid: 'uid-2' } },
      'Warning',
      'ReconcileError',
      'boom',
    );
    expect(created).toHaveLength(3);
    vi.advanceTimersByTime(10 * 60_000 - 1);
    recorder.record(endpoint, 'Warning', 'ReconcileError', 'boom');
    expect(created).toHaveLength(3);
    vi.advanceTimersByTime(1);
    recorder.record(endpoint, 'Warning', 'ReconcileError', 'boom');
    expect(created).toHaveLength(4);
  });

  it('remembers a bounded number of events', () => {
    const { created, recorder } = setup();
    for (let i = 0; i < 5_000; i++) recorder.record(endpoint, 'Normal', 'Tick', `message ${i}`);
    // The oldest were forgotten, so they are recorded again; the newest are still suppressed.
    recorder.record(endpoint, 'Normal', 'Tick', 'message 0');
    recorder.record(endpoint, 'Normal', 'Tick', 'message 4999');
    expect(created).toHaveLength(5_001);
  });

  it('never throws, and logs a failed post', async () => {
    const { logs, recorder } = setup(() => Promise.reject(new Error('403 Forbidden')));
    expect(() => recorder.record(endpoint, 'Warning', 'Failed', 'x')).not.toThrow();
    expect(() => recorder.record({ metadata: undefined } as never, 'Warning', 'Failed', 'x')).not.toThrow();
    await vi.advanceTimersByTimeAsync(0);
    expect(logs.map((l) => l.msg)).toEqual(['could not record an event', 'could not record an event']);
  });

  it('truncates long messages', () => {
    const { created, recorder } = setup();
    recorder.record(endpoint, 'Warning', 'Failed', 'x'.repeat(5_000));
    expect(created[0].obj.message).toHaveLength(1_024);
  });
});
