import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TerminalError, WorkQueue, type ReconcileResult } from './queue.ts';

const logger = pino({ level: 'silent' });

/** A handler whose calls stay in flight until the test settles them. */
function controlledHandler() {
  const calls: { key: string; resolve: (r?: ReconcileResult) => void; reject: (e: unknown) => void }[] = [];
  const handler = (key: string) =>
    new Promise<ReconcileResult>((resolve, reject) => calls.push({ key, resolve, reject }));
  return { calls, handler };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('WorkQueue', () => {
  it('queues a waiting key only once', async () => {
    const queue = new WorkQueue({ concurrency: 1, logger });
    queue.add('a');
    queue.add('b');
    queue.add('a');
    expect(queue.depth).toBe(2);
    const seen: string[] = [];
    queue.start(async (key) => {
      seen.push(key);
    });
    await vi.runAllTimersAsync();
    expect(seen).toEqual(['a', 'b']);
    expect(queue.depth).toBe(0);
  });

  it('runs low-priority keys after every other key, and moves one up when it is named again at normal priority', async () => {
    const queue = new WorkQueue({ concurrency: 1, logger });
    for (const k of ['new1', 'new2', 'new3']) queue.add(k, 'low');
    queue.add('busy');
    queue.add('new3');
    queue.add('busy', 'low');
    expect(queue.depth).toBe(4);
    const seen: string[] = [];
    queue.start(async (key) => {
      seen.push(key);
      // An event about an endpoint in flight, while first passes wait: it goes first.
      if (key === 'busy' && seen.length === 1) queue.add('busy');
    });
    await vi.runAllTimersAsync();
    expect(seen).toEqual(['busy', 'new3', 'busy', 'new1', 'new2']);
  });

  it('puts a key added low while it runs back in line low', async () => {
    const { calls, handler } = controlledHandler();
    const queue = new WorkQueue({ concurrency: 1, logger });
    queue.start(handler);
    queue.add('a');
    await vi.advanceTimersByTimeAsync(0);
    queue.add('a', 'low');
    queue.add('b');
    calls[0].resolve();
    await vi.advanceTimersByTimeAsync(0);
    calls[1].resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.map((c) => c.key)).toEqual(['a', 'b', 'a']);
    calls[2].resolve();
  });

  it('never runs the same key twice at once, and runs it again once if added while running', async () => {
    const { calls, handler } = controlledHandler();
    const queue = new WorkQueue({ concurrency: 4, logger });
    queue.start(handler);
    queue.add('a');
    await vi.advanceTimersByTimeAsync(0);
    queue.add('a');
    queue.add('a');
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.map((c) => c.key)).toEqual(['a']);
    calls[0].resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.map((c) => c.key)).toEqual(['a', 'a']);
    calls[1].resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(2);
  });

  it('bounds concurrency', async () => {
    const { calls, handler } = controlledHandler();
    const depths: number[] = [];
    const queue = new WorkQueue({ concurrency: 2, logger, onDepth: (d) => depths.push(d) });
    for (const key of ['a', 'b', 'c', 'd']) queue.add(key);
    queue.start(handler);
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.map((c) => c.key)).toEqual(['a', 'b']);
    expect(queue.depth).toBe(2);
    calls[1].resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.map((c) => c.key)).toEqual(['a', 'b', 'c']);
    expect(queue.depth).toBe(1);
    expect(depths.at(-1)).toBe(1);
    expect(Math.max(...depths)).toBe(4);
  });

  it('retries a failing key with exponential backoff, capped', async () => {
    const times: number[] = [];
    const queue = new WorkQueue({ concurrency: 1, baseDelayMs: 10, maxDelayMs: 50, logger });
    const start = Date.now();
    queue.start(async () => {
      times.push(Date.now() - start);
      throw new Error('boom');
    });
    queue.add('a');
    await vi.advanceTimersByTimeAsync(1_000);
    const gaps = times.slice(1, 7).map((t, i) => t - times[i]);
    expect(gaps).toEqual([10, 20, 40, 50, 50, 50]);
    await queue.shutdown();
  });

  it('forgets the failures of a key once it succeeds', async () => {
    const times: number[] = [];
    let failuresLeft = 3;
    const queue = new WorkQueue({ concurrency: 1, baseDelayMs: 10, logger });
    queue.start(async () => {
      times.push(Date.now());
      if (failuresLeft-- > 0) throw new Error('boom');
    });
    queue.add('a');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(times).toHaveLength(4);
    failuresLeft = 1;
    queue.add('a');
    await vi.advanceTimersByTimeAsync(1_000);
    // The new failure is the first one again: retried after the base delay, not 80 ms.
    expect(times).toHaveLength(6);
    expect(times[5] - times[4]).toBe(10);
  });

  it('does not retry a terminal error', async () => {
    let calls = 0;
    const queue = new WorkQueue({ concurrency: 1, logger });
    queue.start(async () => {
      calls++;
      throw new TerminalError('invalid spec');
    });
    queue.add('a');
    await vi.advanceTimersByTimeAsync(600_000);
    expect(calls).toBe(1);
  });

  it('honours requeueAfterMs, and keeps the earliest of several delays', async () => {
    const times: number[] = [];
    const start = Date.now();
    const queue = new WorkQueue({ concurrency: 1, logger });
    let first = true;
    queue.start(async () => {
      times.push(Date.now() - start);
      if (first) {
        first = false;
        return { requeueAfterMs: 1_000 };
      }
    });
    queue.add('a');
    queue.addAfter('b', 500);
    queue.addAfter('b', 2_000);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(times).toEqual([0, 500, 1_000]);
  });

  it('hold lets in-flight handlers finish and hands out nothing until resume, then everything in order', async () => {
    const { calls, handler } = controlledHandler();
    const queue = new WorkQueue({ concurrency: 2, logger });
    queue.start(handler);
    queue.add('a');
    await vi.advanceTimersByTimeAsync(0);
    queue.hold();
    queue.add('b');
    queue.add('c');
    queue.add('a');
    calls[0].resolve();
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls.map((c) => c.key)).toEqual(['a']);
    expect(queue.depth).toBe(3);
    queue.resume();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.map((c) => c.key)).toEqual(['a', 'b', 'c']);
    calls[1].resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.map((c) => c.key)).toEqual(['a', 'b', 'c', 'a']);
  });

  it('shutdown stops taking keys and waits for in-flight handlers', async () => {
    const { calls, handler } = controlledHandler();
    const queue = new WorkQueue({ concurrency: 1, logger });
    queue.start(handler);
    queue.add('a');
    queue.add('b');
    queue.addAfter('c', 10);
    await vi.advanceTimersByTimeAsync(0);
    let done = false;
    const shutdown = queue.shutdown(10_000).then(() => (done = true));
    queue.add('d');
    await vi.advanceTimersByTimeAsync(100);
    expect(done).toBe(false);
    calls[0].resolve();
    await shutdown;
    expect(calls.map((c) => c.key)).toEqual(['a']);
    expect(queue.depth).toBe(0);
  });

  it('shutdown gives up after its timeout', async () => {
    const { handler } = controlledHandler();
    const queue = new WorkQueue({ concurrency: 1, logger });
    queue.start(handler);
    queue.add('a');
    await vi.advanceTimersByTimeAsync(0);
    let done = false;
    void queue.shutdown(1_000).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(true);
  });

  it('survives a handler that throws synchronously', async () => {
    let calls = 0;
    const queue = new WorkQueue({ concurrency: 1, baseDelayMs: 10, logger });
    queue.start((key: string) => {
      calls++;
      if (calls === 1) throw new Error(`sync ${key}`);
      return Promise.resolve();
    });
    queue.add('a');
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(2);
  });
});
