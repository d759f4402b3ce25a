// The work queue, like client-go's rate-limited priority queue: a key is queued at most once however
// many events name it, is never processed twice at once, is retried with per-key exponential backoff
// when its handler throws, and at most `concurrency` keys are processed together. Keys queued with
// low priority (first passes of new endpoints) wait behind every other key, so that a burst of new
// endpoints never delays the ones already in flight; a low key named again at normal priority moves up.
import type { Logger } from '../log.ts';

/** What a reconcile returns: done, or "look again after this long". Throwing means "retry with backoff". */
// void, not undefined: a reconcile function that returns nothing is done.
// eslint-disable-next-line @typescript-eslint/no-invalid-void-type
export type ReconcileResult = { requeueAfterMs?: number } | void;

/** A failure that retrying cannot fix (invalid spec, say): the key is not requeued. */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export interface WorkQueueOptions {
  concurrency: number;
  /** First retry delay; doubles with each consecutive failure of the key. Default 5 ms. */
  baseDelayMs?: number;
  /** Cap of the retry delay. Default 5 minutes. */
  maxDelayMs?: number;
  logger: Logger;
  /** Called whenever the number of keys waiting to be processed changes. */
  onDepth?: (depth: number) => void;
}

export class WorkQueue {
  private readonly concurrency: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly log: Logger;
  private readonly onDepth: ((depth: number) => void) | undefined;
  /** Keys ready to be processed, in order (a Set keeps insertion order): normal priority, then low. */
  private readonly ready = new Set<string>();
  private readonly readyLow = new Set<string>();
  /** Low-priority adds of keys being processed: they go back in line low. */
  private readonly lowWhenDone = new Set<string>();
  /** Keys that must be processed (again): those in `ready`, and those processing that were added meanwhile. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  /** addAfter timers, one per key: the earliest wins. */
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private handler: ((key: string) => Promise<ReconcileResult>) | undefined;
  private shuttingDown = false;
  private held = false;
  private drained: (() => void) | undefined;

  constructor(options: WorkQueueOptions) {
    if (!(options.concurrency >= 1)) throw new Error(`concurrency must be at least 1, not ${options.concurrency}`);
    this.concurrency = options.concurrency;
    this.baseDelayMs = options.baseDelayMs ?? 5;
    this.maxDelayMs = options.maxDelayMs ?? 300_000;
    this.log = options.logger;
    this.onDepth = options.onDepth;
  }

  /** Keys waiting to be processed. */
  get depth(): number {
    return this.ready.size + this.readyLow.size;
  }

  add(key: string, priority: 'normal' | 'low' = 'normal'): void {
    if (this.shuttingDown) return;
    if (this.dirty.has(key)) {
      if (priority === 'low') return;
      this.lowWhenDone.delete(key);
      if (this.readyLow.delete(key)) this.ready.add(key);
      return;
    }
    this.dirty.add(key);
    // A key being processed goes back in line when its handler finishes.
    if (this.processing.has(key)) {
      if (priority === 'low') this.lowWhenDone.add(key);
      return;
    }
    (priority === 'low' ? this.readyLow : this.ready).add(key);
    this.depthChanged();
    this.pump();
  }

  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending) {
      if (pending.at <= at) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { at, timer });
  }

  /** Starts processing: up to `concurrency` keys at once, never the same key twice at once. */
  start(handler: (key: string) => Promise<ReconcileResult>): void {
    if (this.handler) throw new Error('work queue already started');
    this.handler = handler;
    this.pump();
  }

  /** Stops handing out keys (those added meanwhile wait, in order) until resume(); in-flight handlers go on. */
  hold(): void {
    this.held = true;
  }

  resume(): void {
    this.held = false;
    this.pump();
  }

  /** Stops taking new keys; resolves when in-flight handlers finish, or after timeoutMs. */
  async shutdown(timeoutMs = 30_000): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.ready.clear();
    this.readyLow.clear();
    this.lowWhenDone.clear();
    this.dirty.clear();
    this.depthChanged();
    if (this.processing.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const finished = new Promise<void>((resolve) => (this.drained = resolve));
    const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([finished, timedOut]);
    clearTimeout(timer);
    if (this.processing.size > 0)
      this.log.warn({ inFlight: [...this.processing] }, 'work queue shutdown timed out with reconciles still running');
  }

  private pump(): void {
    const handler = this.handler;
    if (!handler || this.held) return;
    while (!this.shuttingDown && this.processing.size < this.concurrency && this.depth > 0) {
      const queue = this.ready.size > 0 ? this.ready : this.readyLow;
      const key: string = queue.values().next().value!;
      queue.delete(key);
      this.dirty.delete(key);
      this.processing.add(key);
      this.depthChanged();
      void this.process(key, handler);
    }
  }

  private async process(key: string, handler: (key: string) => Promise<ReconcileResult>): Promise<void> {
    try {
      const result = await handler(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      if (err instanceof TerminalError) {
        this.failures.delete(key);
        this.log.error({ err, key }, 'reconcile failed for good; not retrying');
      } else {
        const failures = this.failures.get(key) ?? 0;
        this.failures.set(key, failures + 1);
        const delayMs = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(failures, 52));
        this.log.error(
          { err, key, failures: failures + 1, retryInMs: delayMs },
          'reconcile failed; retrying after backoff',
        );
        this.addAfter(key, delayMs);
      }
    } finally {
      this.processing.delete(key);
      if (this.shuttingDown) {
        if (this.processing.size === 0) this.drained?.();
      } else {
        if (this.dirty.has(key)) {
          (this.lowWhenDone.delete(key) ? this.readyLow : this.ready).add(key);
          this.depthChanged();
        }
        this.pump();
      }
    }
  }

  private depthChanged(): void {
    this.onDepth?.(this.depth);
  }
}
