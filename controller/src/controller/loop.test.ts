import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FencedError } from '../kube/client.ts';
import type { Caches } from '../reconcile/caches.ts';
import type { EndpointReconciler } from '../reconcile/endpoint.ts';
import type { EventRecorder } from '../runtime/events.ts';
import { Metrics } from '../runtime/metrics.ts';
import { WorkQueue } from '../runtime/queue.ts';
import { startLoop } from './loop.ts';

describe('the controller loop', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('neither retries nor counts as an error a reconcile stopped because the replica no longer leads', async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const queue = new WorkQueue({ concurrency: 1, logger, baseDelayMs: 1 });
    const calls: string[] = [];
    const reconciler = {
      reconcile: async (key: string) => {
        calls.push(key);
        throw new FencedError('PATCH deployments/m-1');
      },
    } as unknown as EndpointReconciler;
    const events: string[] = [];
    const metrics = new Metrics();
    const caches = { endpoints: { get: () => undefined } } as unknown as Caches;
    startLoop({
      queue,
      reconciler,
      caches,
      metrics,
      events: { record: (_o: unknown, _t: string, reason: string) => events.push(reason) } as unknown as EventRecorder,
      logger,
    });
    queue.add('ns/e');
    // A retry with backoff would come after 1 ms, then 2, 4... up to 5 minutes: none comes within
    // 10 minutes. The key waits for the next term, when every endpoint is queued again.
    await vi.advanceTimersByTimeAsync(600_000);
    expect(calls).toEqual(['ns/e']);
    expect(lines.filter((l) => l.level >= 50).map((l) => l.msg)).toEqual([]);
    expect(events).toEqual([]);
    const errors = (await metrics.reconcileErrors.get()).values.reduce((n, v) => n + v.value, 0);
    expect(errors).toBe(0);
    await queue.shutdown(1000);
  });
});
