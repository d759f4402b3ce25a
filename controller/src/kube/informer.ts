// A list+watch cache of one resource (in one namespace or all, optionally behind a label selector),
// built to survive what stops client-node's informer: it relists on 410 Gone, retries every other
// error with backoff, bounds each watch so that a silently stalled one cannot last, and never lets a
// handler's exception into the watch loop.
import type { Logger } from '../log.ts';
import { pause } from './pause.ts';
import { KubeError, type KubeClient, type WatchEventType } from './client.ts';
import type { KubeObject, Resource } from './resources.ts';

export interface InformerHandlers<T extends KubeObject> {
  onAdd?(obj: T): void;
  onUpdate?(obj: T, old: T): void;
  onDelete?(obj: T): void;
}

/** Index functions: the values an object is found under (client-go's Indexers). */
export type Indexers<T> = Record<string, (obj: T) => string[]>;

export interface InformerOptions<T extends KubeObject = KubeObject> {
  namespace?: string;
  labelSelector?: string;
  logger: Logger;
  /** Lookups by value that would otherwise scan the whole cache (objects by their endpoint label, say). */
  indexers?: Indexers<T>;
  /**
   * Applied to each object before it is cached or handed to the handlers: drop what the controller
   * never reads, so the cache holds only that (controller-runtime's cache transforms).
   */
  transform?: (obj: T) => T;
  /** Server-side bound of each watch; default: random in 300..600, so that replicas do not re-watch in step. */
  watchTimeoutSeconds?: number;
}

const initialBackoffMs = 200;
const maxBackoffMs = 30_000;
/** How long past its own timeout a watch may stay silent (not even a bookmark) before it is presumed stalled. */
const stallGraceMs = 30_000;

/** A watch that ends sooner than this without a single event is suspicious. */
const shortWatchMs = 1_000;

/** The watch's resourceVersion is too old (or the server says so mid-stream): list again. */
class GoneError extends Error {}
/** Nothing arrived on the watch for too long. */
class StalledError extends Error {}

function isGone(err: unknown): boolean {
  return err instanceof GoneError || (err instanceof KubeError && err.code === 410);
}

function namespaceOf(obj: KubeObject): string {
  return obj.metadata.namespace ?? '';
}

export class Informer<T extends KubeObject> {
  private readonly client: KubeClient;
  private readonly resource: Resource;
  private readonly namespace: string | undefined;
  private readonly labelSelector: string | undefined;
  private readonly watchTimeoutSeconds: number | undefined;
  private readonly handlers: InformerHandlers<T>;
  private readonly log: Logger;
  /** namespace ('' when cluster-scoped) -> name -> object. */
  private store = new Map<string, Map<string, T>>();
  private readonly indexers: Indexers<T>;
  private readonly transform: ((obj: T) => T) | undefined;
  /** index name -> value -> "namespace/name" -> object. */
  private indices = new Map<string, Map<string, Map<string, T>>>();
  private synced = false;
  private readonly syncWaiters = new Set<() => void>();
  private started = false;
  /** The current list+watch cycle has delivered a watch event: the connection works. */
  private healthy = false;
  /** Where the next watch starts: the last resourceVersion listed or seen on a watch; undefined: list first. */
  private resourceVersion: string | undefined;
  private readonly stopController = new AbortController();

  constructor(client: KubeClient, r: Resource, options: InformerOptions<T>, handlers: InformerHandlers<T>) {
    this.client = client;
    this.resource = r;
    this.namespace = options.namespace;
    this.labelSelector = options.labelSelector;
    this.watchTimeoutSeconds = options.watchTimeoutSeconds;
    this.indexers = options.indexers ?? {};
    this.transform = options.transform;
    this.handlers = handlers;
    this.log = options.logger.child({
      resource: r.group ? `${r.plural}.${r.group}` : r.plural,
      namespace: options.namespace ?? '*',
      ...(options.labelSelector && { labelSelector: options.labelSelector }),
    });
  }

  /** Lists, then watches, forever, until stop(). */
  start(): void {
    if (this.started) throw new Error('informer already started');
    this.started = true;
    void this.run();
  }

  /** Aborts the watch; the informer never restarts afterwards. The cache stays readable. */
  stop(): void {
    this.stopController.abort(new Error('informer stopped'));
  }

  /** True once the first full list is in the cache. */
  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.syncWaiters.delete(done);
        reject(signal!.reason);
      };
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.add(done);
    });
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.store.get(namespace ?? '')?.get(name);
  }

  /** The objects an index finds under a value: no scan of the cache. */
  byIndex(index: string, value: string): T[] {
    if (!(index in this.indexers)) throw new Error(`no index ${index} on this informer`);
    return [...(this.indices.get(index)?.get(value)?.values() ?? [])];
  }

  /** All objects, or one namespace's. */
  list(namespace?: string): T[] {
    if (namespace !== undefined) return [...(this.store.get(namespace)?.values() ?? [])];
    return [...this.store.values()].flatMap((byName) => [...byName.values()]);
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  private async run(): Promise<void> {
    let backoffMs = initialBackoffMs;
    while (!this.stopped) {
      this.healthy = false;
      try {
        this.resourceVersion ??= await this.relist();
        if (this.resourceVersion === undefined) return;
        await this.watch();
        backoffMs = initialBackoffMs;
      } catch (err) {
        if (this.stopped) return;
        if (isGone(err)) {
          this.log.info({ resourceVersion: this.resourceVersion }, 'watch resourceVersion expired; relisting');
          this.resourceVersion = undefined;
          continue;
        }
        if (err instanceof StalledError) {
          // Resuming from the last resourceVersion loses nothing; should it be too old, a 410 relists.
          this.log.warn({ err, resourceVersion: this.resourceVersion }, 'watch stalled; watching again');
          continue;
        }
        // A list that succeeds followed by a watch that fails at once (say, RBAC grants list but not
        // watch) must not loop at the initial backoff: only a watch that delivered something resets it.
        if (this.healthy) backoffMs = initialBackoffMs;
        this.log.error({ err, retryInMs: backoffMs }, 'list/watch failed; relisting after backoff');
        this.resourceVersion = undefined;
        await pause(backoffMs, this.stopController.signal);
        backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
      }
    }
  }

  /** Replaces the cache with a fresh list and tells the handlers what changed; returns the list's resourceVersion. */
  private async relist(): Promise<string | undefined> {
    const { items, resourceVersion } = await this.client.list<T>(this.resource, this.namespace, {
      labelSelector: this.labelSelector,
    });
    if (this.stopped) return undefined;
    const old = this.store;
    const fresh = new Map<string, Map<string, T>>();
    this.indices = new Map();
    for (let i = 0; i < items.length; i++) {
      const obj = (items[i] = this.transform ? this.transform(items[i]) : items[i]);
      this.index(obj, undefined);
      const ns = namespaceOf(obj);
      let byName = fresh.get(ns);
      if (!byName) fresh.set(ns, (byName = new Map<string, T>()));
      byName.set(obj.metadata.name, obj);
    }
    this.store = fresh;
    for (const obj of items) {
      const previous = old.get(namespaceOf(obj))?.get(obj.metadata.name);
      if (!previous) this.notify('add', obj);
      else if (previous.metadata.resourceVersion !== obj.metadata.resourceVersion) this.notify('update', obj, previous);
    }
    for (const [ns, byName] of old) {
      for (const [name, obj] of byName) if (!fresh.get(ns)?.has(name)) this.notify('delete', obj);
    }
    this.log.debug({ count: items.length, resourceVersion }, 'listed');
    if (!this.synced) {
      this.synced = true;
      for (const done of this.syncWaiters) done();
      this.syncWaiters.clear();
    }
    return resourceVersion;
  }

  /**
   * One bounded watch from the last resourceVersion seen, which it keeps up to date; resolves when
   * the server ends it. A watch that ends at once having delivered nothing counts as a failure, so
   * that it cannot spin.
   */
  private async watch(): Promise<void> {
    const timeoutSeconds = this.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 301);
    const stallMs = timeoutSeconds * 1000 + stallGraceMs;
    const controller = new AbortController();
    const onStop = () => controller.abort(this.stopController.signal.reason);
    this.stopController.signal.addEventListener('abort', onStop, { once: true });
    let stallTimer = setTimeout(
      () => controller.abort(new StalledError(`nothing received for ${stallMs / 1000}s`)),
      stallMs,
    );
    const startedAt = Date.now();
    try {
      await this.client.watch(
        this.resource,
        this.namespace,
        {
          resourceVersion: this.resourceVersion!,
          labelSelector: this.labelSelector,
          timeoutSeconds,
          signal: controller.signal,
        },
        (type, object) => {
          clearTimeout(stallTimer);
          stallTimer = setTimeout(
            () => controller.abort(new StalledError(`nothing received for ${stallMs / 1000}s`)),
            stallMs,
          );
          this.resourceVersion = this.apply(type, object) ?? this.resourceVersion;
          this.healthy = true;
        },
      );
      if (!this.healthy && Date.now() - startedAt < shortWatchMs)
        throw new Error('the watch ended at once without delivering anything');
    } finally {
      clearTimeout(stallTimer);
      this.stopController.signal.removeEventListener('abort', onStop);
    }
  }

  /** Applies one watch event to the cache; returns the resourceVersion it carries. */
  private apply(type: WatchEventType, object: unknown): string | undefined {
    // An ERROR event carries a Status; the others an object of the watched kind.
    const event = object as {
      code?: unknown;
      reason?: string;
      message?: string;
      details?: unknown;
      metadata?: { resourceVersion?: string };
    } | null;
    if (type === 'ERROR') {
      const code = Number(event?.code);
      const message = `watch error: ${code} ${event?.reason ?? ''}: ${event?.message ?? JSON.stringify(object)}`;
      throw code === 410
        ? new GoneError(message)
        : new KubeError(message, code, event?.reason ?? 'Unknown', event?.details);
    }
    const resourceVersion = event?.metadata?.resourceVersion;
    if (type === 'BOOKMARK' || this.stopped) return resourceVersion;
    const obj = this.transform ? this.transform(object as T) : (object as T);
    const ns = namespaceOf(obj);
    let byName = this.store.get(ns);
    const previous = byName?.get(obj.metadata.name);
    if (type === 'DELETED') {
      byName?.delete(obj.metadata.name);
      if (byName?.size === 0) this.store.delete(ns);
      if (previous) this.unindex(previous);
      this.notify('delete', obj);
      return resourceVersion;
    }
    if (!byName) this.store.set(ns, (byName = new Map<string, T>()));
    byName.set(obj.metadata.name, obj);
    this.index(obj, previous);
    if (previous) this.notify('update', obj, previous);
    else this.notify('add', obj);
    return resourceVersion;
  }

  /** Files the object under every value of every index, in place of its previous version. */
  private index(obj: T, previous: T | undefined): void {
    if (previous) this.unindex(previous);
    const key = `${namespaceOf(obj)}/${obj.metadata.name}`;
    for (const [name, values] of Object.entries(this.indexers)) {
      let index = this.indices.get(name);
      if (!index) this.indices.set(name, (index = new Map<string, Map<string, T>>()));
      for (const value of values(obj)) {
        let entries = index.get(value);
        if (!entries) index.set(value, (entries = new Map<string, T>()));
        entries.set(key, obj);
      }
    }
  }

  private unindex(obj: T): void {
    const key = `${namespaceOf(obj)}/${obj.metadata.name}`;
    for (const [name, values] of Object.entries(this.indexers)) {
      const index = this.indices.get(name);
      for (const value of values(obj)) {
        const entries = index?.get(value);
        entries?.delete(key);
        if (entries?.size === 0) index!.delete(value);
      }
    }
  }

  private notify(event: 'add' | 'update' | 'delete', obj: T, old?: T): void {
    try {
      if (event === 'add') this.handlers.onAdd?.(obj);
      else if (event === 'update') this.handlers.onUpdate?.(obj, old!);
      else this.handlers.onDelete?.(obj);
    } catch (err) {
      this.log.error(
        { err, event, name: obj.metadata.name, objectNamespace: obj.metadata.namespace },
        'informer handler threw',
      );
    }
  }
}
