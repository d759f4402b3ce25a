// Data Capture off the request path. The proxy hands over a finished exchange (add() never waits);
// records gather in the current file until it reaches rotation.maxBytes or rotation.maxSeconds, then
// the file is sealed and queued for the sink. Everything held (the current file and the queue) is
// bounded by bufferBytes: past it a record is dropped and counted. One writer loop sends sealed files
// in order; a failing sink is retried with backoff (the files wait in the queue meanwhile) and its
// health (healthy, error, since) is what /-/agent/status reports.
import { setTimeout as delay } from 'node:timers/promises';
import type { CaptureConfig, Identity } from './config.ts';
import { toRecord, type Exchange } from './record.ts';
import type { Sink } from './sink.ts';

export interface CaptureStatus {
  enabled: boolean;
  samplingPercent: number;
  destination: string;
  healthy: boolean;
  error: string | null;
  since: string;
  written: number;
  dropped: number;
  configError: string | null;
}

interface Destination {
  name: string;
  sink: Promise<Sink>;
}

interface OpenFile {
  destination: Destination;
  lines: Buffer[];
  bytes: number;
  records: number;
  opened: number;
  firstRecord: Date;
}

interface SealedFile {
  destination: Destination;
  key: string;
  body: Buffer;
  records: number;
}

export interface CaptureOptions {
  identity: Identity;
  bufferBytes: number;
  openSink: (destination: string) => Promise<Sink>;
  onWritten?: (records: number) => void;
  onDropped?: (records: number) => void;
  onError?: (message: string, destination: string) => void;
  /** Backoff between attempts on a failing sink (doubling, capped at maxRetryMs). */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** How long one write (or check) may take before it counts as failed. */
  sinkTimeoutMs?: number;
  now?: () => number;
}

const pad = (n: number) => String(n).padStart(2, '0');

export class Capture {
  private config: CaptureConfig | undefined;
  private configError: string | null = null;
  private destination: Destination | undefined;
  private open: OpenFile | undefined;
  private readonly queue: SealedFile[] = [];
  private held = 0;
  private written = 0;
  private dropped = 0;
  private healthy = true;
  private error: string | null = null;
  private since: number;
  private sequence: number;
  private pumping: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private stopped = false;
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;

  private readonly options: CaptureOptions;

  constructor(options: CaptureOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.since = this.now();
    // File numbers start at the start time in milliseconds: a restarted agent never reuses a name.
    this.sequence = this.now();
    this.timer = setInterval(() => this.rotateIfDue(), 250);
    this.timer.unref();
  }

  /** Applies a (new) config; the file being filled goes to the sink it was meant for. */
  configure(config: CaptureConfig): void {
    const previous = this.config;
    this.config = config;
    this.configError = null;
    const destination = config.enabled ? config.destination : '';
    if (
      previous &&
      previous.enabled &&
      previous.destination === destination &&
      previous.rotation.maxBytes === config.rotation.maxBytes
    )
      return;
    this.seal();
    if (!destination) {
      this.destination = undefined;
      this.setHealth(true, null);
      return;
    }
    if (this.destination?.name !== destination) {
      const sink = this.options.openSink(destination);
      sink.catch(() => {});
      this.destination = { name: destination, sink };
      this.setHealth(true, null);
      void this.checkNow();
    }
  }

  /** Resolves once the current destination's sink is open (or has failed to open). */
  async opened(): Promise<void> {
    await this.destination?.sink.catch(() => {});
  }

  /** The config file could not be used: the last good config stays, and status says why. */
  reportConfigError(message: string | null): void {
    this.configError = message;
  }

  /** Whether this request is captured: decided once, when it arrives. */
  sample(): boolean {
    const c = this.config;
    return !!c && c.enabled && c.samplingPercent > 0 && !this.stopped && Math.random() * 100 < c.samplingPercent;
  }

  get maxRecordBytes(): number {
    return this.config?.maxRecordBytes ?? 0;
  }

  /** Takes one finished exchange; never waits. Drops (and counts) it when the buffer is full. */
  add(exchange: Exchange): void {
    const c = this.config;
    if (!c || !c.enabled || !this.destination) return;
    // Taken when it arrived, but too late to be written (it waited for a shadow past the flush).
    if (this.stopped) {
      this.drop(1);
      return;
    }
    const line = Buffer.from(
      `${JSON.stringify(toRecord(exchange, c.captureOptions, c.textContentTypes, this.options.identity))}\n`,
    );
    if (this.held + line.length > this.options.bufferBytes) {
      this.drop(1);
      return;
    }
    if (!this.open)
      this.open = {
        destination: this.destination,
        lines: [],
        bytes: 0,
        records: 0,
        opened: this.now(),
        firstRecord: exchange.time,
      };
    this.open.lines.push(line);
    this.open.bytes += line.length;
    this.open.records++;
    this.held += line.length;
    if (this.open.bytes >= c.rotation.maxBytes) this.seal();
  }

  status(): CaptureStatus {
    const c = this.config;
    return {
      enabled: !!c?.enabled,
      samplingPercent: c?.samplingPercent ?? 0,
      destination: c?.enabled ? c.destination : '',
      healthy: this.healthy,
      error: this.error,
      since: new Date(this.since).toISOString(),
      written: this.written,
      dropped: this.dropped,
      configError: this.configError,
    };
  }

  /**
   * Seals the open file and writes everything queued, retrying quickly, until `timeoutMs` has
   * passed; what is still unwritten then is counted as dropped. Capture takes nothing after it.
   */
  async flush(timeoutMs: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.seal();
    const deadline = this.now() + timeoutMs;
    while (this.queue.length && this.now() < deadline) {
      this.kick();
      const timeout = new AbortController();
      await Promise.race([
        this.pumping,
        delay(Math.max(0, deadline - this.now()), undefined, { signal: timeout.signal }).catch(() => {}),
      ]);
      timeout.abort();
    }
    const left = this.queue.splice(0);
    for (const f of left) this.held -= f.body.length;
    this.drop(left.reduce((s, f) => s + f.records, 0));
    this.wake?.();
  }

  private drop(records: number): void {
    if (!records) return;
    this.dropped += records;
    this.options.onDropped?.(records);
  }

  private rotateIfDue(): void {
    const c = this.config;
    if (this.open && c && this.now() - this.open.opened >= c.rotation.maxSeconds * 1000) this.seal();
  }

  private seal(): void {
    const f = this.open;
    if (!f) return;
    this.open = undefined;
    const { namespace, endpoint, variant, pod } = this.options.identity;
    const t = f.firstRecord;
    const hour = `${t.getUTCFullYear()}/${pad(t.getUTCMonth() + 1)}/${pad(t.getUTCDate())}/${pad(t.getUTCHours())}`;
    const key = `${namespace}/${endpoint}/${variant}/${hour}/${pod}-${this.sequence++}.jsonl`;
    this.queue.push({ destination: f.destination, key, body: Buffer.concat(f.lines, f.bytes), records: f.records });
    this.kick();
  }

  private setHealth(healthy: boolean, error: string | null): void {
    if (healthy !== this.healthy) this.since = this.now();
    if (!healthy && error !== this.error) this.options.onError?.(error ?? '', this.destination?.name ?? '');
    this.healthy = healthy;
    this.error = error;
  }

  /** Starts the writer loop if it is not running, and cuts its backoff short. */
  private kick(): void {
    if (this.wake) this.wake();
    if (!this.pumping) {
      this.pumping = this.pump().finally(() => {
        this.pumping = undefined;
        if ((this.queue.length || !this.healthy) && !this.stopped) this.kick();
      });
    }
  }

  private async pump(): Promise<void> {
    let retryMs = this.options.minRetryMs ?? 500;
    const maxRetryMs = this.options.maxRetryMs ?? 30_000;
    for (;;) {
      const file = this.queue[0];
      const destination = file?.destination ?? this.destination;
      if (!destination || (!file && this.healthy)) return;
      try {
        const sink = await destination.sink;
        if (file) {
          await this.bounded(sink.put(file.key, file.body), destination.name);
          this.queue.shift();
          this.held -= file.body.length;
          this.written += file.records;
          this.options.onWritten?.(file.records);
        } else {
          await this.bounded(sink.check(), destination.name);
        }
        if (destination === this.destination) this.setHealth(true, null);
        retryMs = this.options.minRetryMs ?? 500;
      } catch (e) {
        if (destination === this.destination) this.setHealth(false, (e as Error).message ?? String(e));
        if (this.stopped && !this.queue.length) return;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, this.stopped ? 100 : retryMs);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
        retryMs = Math.min(retryMs * 2, maxRetryMs);
        // A sink that failed to open is opened again: its credentials or endpoint may have come back.
        if (
          this.destination === destination &&
          (await destination.sink.then(
            () => false,
            () => true,
          ))
        ) {
          const sink = this.options.openSink(destination.name);
          sink.catch(() => {});
          destination.sink = sink;
        }
      }
    }
  }

  /** A sink's call, failed if it has not settled in sinkTimeoutMs: a store that hangs is a failing store. */
  private async bounded<T>(call: Promise<T>, destination: string): Promise<T> {
    const timeoutMs = this.options.sinkTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `${destination} did not answer within ${timeoutMs / 1000} s: check the endpoint and the network; the agent retries`,
            ),
          ),
        timeoutMs,
      );
    });
    call.catch(() => {});
    try {
      return await Promise.race([call, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The first check of a new destination, so that a bad one is reported before any traffic. */
  async checkNow(): Promise<void> {
    const d = this.destination;
    if (!d) return;
    try {
      await this.bounded((await d.sink).check(), d.name);
      if (d === this.destination) this.setHealth(true, null);
    } catch (e) {
      if (d === this.destination) {
        this.setHealth(false, (e as Error).message);
        this.kick();
      }
    }
  }
}
