// The informer's list/watch loop against a scripted client: what it caches and reports, and how it
// recovers (re-watch, relist on 410, backoff on errors, stalled watches). The real API server is in
// test/integration.
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KubeError, type KubeClient, type WatchEventType, type WatchOptions } from './client.ts';
import { Informer, type Indexers } from './informer.ts';
import type { KubeObject, Resource } from './resources.ts';

const configMap: Resource = { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true };

const cm = (namespace: string, name: string, resourceVersion: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { namespace, name, resourceVersion },
});

interface WatchCall {
  opts: WatchOptions;
  send(type: WatchEventType, object: unknown): void;
  end(): void;
  fail(err: unknown): void;
}

/** A client whose list answers are queued by the test and whose watches the test drives. */
class ScriptedClient {
  readonly lists: ({ items: KubeObject[]; resourceVersion: string } | Error)[] = [];
  listCalls = 0;
  readonly watches: WatchCall[] = [];

  async list() {
    this.listCalls++;
    const next = this.lists.shift();
    if (!next) throw new Error('no list scripted');
    if (next instanceof Error) throw next;
    return { items: next.items.map((o) => structuredClone(o)), resourceVersion: next.resourceVersion };
  }

  watch(
    _r: Resource,
    _ns: string | undefined,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, object: any) => void,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      let open = true;
      const call: WatchCall = {
        opts,
        send: (type, object) => {
          if (!open) return;
          try {
            onEvent(type, object);
          } catch (err) {
            open = false;
            reject(err);
          }
        },
        end: () => {
          open = false;
          resolve();
        },
        fail: (err) => {
          open = false;
          reject(err);
        },
      };
      opts.signal.addEventListener('abort', () => call.fail(opts.signal.reason), { once: true });
      this.watches.push(call);
    });
  }

  get currentWatch(): WatchCall {
    return this.watches.at(-1)!;
  }
}

function setup(
  options: {
    watchTimeoutSeconds?: number;
    namespace?: string;
    indexers?: Indexers<KubeObject>;
    transform?: (o: KubeObject) => KubeObject;
  } = {},
) {
  const client = new ScriptedClient();
  const events: string[] = [];
  const logs: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const informer = new Informer<KubeObject>(
    client as unknown as KubeClient,
    configMap,
    {
      logger,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 60,
      namespace: options.namespace,
      indexers: options.indexers,
      transform: options.transform,
    },
    {
      onAdd: (o) => events.push(`add ${o.metadata.name}@${o.metadata.resourceVersion}`),
      onUpdate: (o, old) =>
        events.push(`update ${o.metadata.name}@${old.metadata.resourceVersion}->${o.metadata.resourceVersion}`),
      onDelete: (o) => events.push(`delete ${o.metadata.name}`),
    },
  );
  return { client, events, logs, informer };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Informer', () => {
  it('lists, syncs, and serves the cache by namespace and name', async () => {
    const { client, events, informer } = setup();
    client.lists.push({ items: [cm('a', 'one', '1'), cm('b', 'two', '2')], resourceVersion: '5' });
    expect(informer.hasSynced()).toBe(false);
    informer.start();
    await informer.waitForSync();
    expect(informer.hasSynced()).toBe(true);
    expect(events).toEqual(['add one@1', 'add two@2']);
    expect(informer.get('a', 'one')?.metadata.resourceVersion).toBe('1');
    expect(informer.get('b', 'one')).toBeUndefined();
    expect(informer.list('b').map((o) => o.metadata.name)).toEqual(['two']);
    expect(
      informer
        .list()
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(['one', 'two']);
    await vi.advanceTimersByTimeAsync(0);
    expect(client.currentWatch.opts).toMatchObject({ resourceVersion: '5', timeoutSeconds: 60 });
    informer.stop();
  });

  it('keeps its indexes true through watch events and relists, and caches objects as transformed', async () => {
    const labelled = (name: string, rv: string, owner?: string): KubeObject => ({
      ...cm('a', name, rv),
      metadata: {
        ...cm('a', name, rv).metadata,
        ...(owner && { labels: { owner } }),
        annotations: { big: 'x'.repeat(100) },
      },
    });
    const { client, events, informer } = setup({
      indexers: { owner: (o) => (o.metadata.labels?.owner ? [o.metadata.labels.owner] : []) },
      transform: (o) => ({ ...o, metadata: { ...o.metadata, annotations: undefined } }),
    });
    client.lists.push({
      items: [labelled('one', '1', 'x'), labelled('two', '2', 'x'), labelled('three', '3')],
      resourceVersion: '5',
    });
    client.lists.push({ items: [labelled('two', '2', 'x'), labelled('four', '9', 'y')], resourceVersion: '10' });
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    const names = (owner: string) =>
      informer
        .byIndex('owner', owner)
        .map((o) => o.metadata.name)
        .sort();
    expect(names('x')).toEqual(['one', 'two']);
    expect(informer.get('a', 'one')?.metadata.annotations).toBeUndefined();
    client.currentWatch.send('MODIFIED', labelled('one', '6', 'y'));
    client.currentWatch.send('ADDED', labelled('three', '7', 'y'));
    client.currentWatch.send('DELETED', labelled('two', '8', 'x'));
    expect(names('x')).toEqual([]);
    expect(names('y')).toEqual(['one', 'three']);
    // The handlers get the transformed object too.
    expect(events.at(-1)).toBe('delete two');
    client.currentWatch.send('ERROR', {
      kind: 'Status',
      code: 410,
      reason: 'Expired',
      message: 'too old resource version',
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(names('x')).toEqual(['two']);
    expect(names('y')).toEqual(['four']);
    expect(() => informer.byIndex('nope', 'x')).toThrow(/no index nope/);
    informer.stop();
  });

  it('applies watch events and re-watches from the last resourceVersion seen, bookmarks included', async () => {
    const { client, events, informer } = setup();
    client.lists.push({ items: [cm('a', 'one', '1')], resourceVersion: '5' });
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    client.currentWatch.send('ADDED', cm('a', 'two', '6'));
    client.currentWatch.send('MODIFIED', cm('a', 'one', '7'));
    client.currentWatch.send('DELETED', cm('a', 'two', '8'));
    client.currentWatch.send('BOOKMARK', { kind: 'ConfigMap', metadata: { resourceVersion: '9' } });
    client.currentWatch.end();
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(['add one@1', 'add two@6', 'update one@1->7', 'delete two']);
    expect(informer.list().map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`)).toEqual(['one@7']);
    expect(client.watches).toHaveLength(2);
    expect(client.currentWatch.opts.resourceVersion).toBe('9');
    expect(client.listCalls).toBe(1);
    informer.stop();
  });

  it('relists on 410 Gone, reporting only what changed against the cache', async () => {
    const { client, events, informer } = setup();
    client.lists.push({
      items: [cm('a', 'same', '1'), cm('a', 'changed', '2'), cm('a', 'vanished', '3')],
      resourceVersion: '5',
    });
    client.lists.push({
      items: [cm('a', 'same', '1'), cm('a', 'changed', '7'), cm('a', 'new', '8')],
      resourceVersion: '9',
    });
    client.lists.push({ items: [cm('a', 'same', '1')], resourceVersion: '12' });
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    events.length = 0;
    client.currentWatch.send('ERROR', {
      kind: 'Status',
      code: 410,
      reason: 'Expired',
      message: 'too old resource version',
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(['update changed@2->7', 'add new@8', 'delete vanished']);
    expect(client.currentWatch.opts.resourceVersion).toBe('9');
    events.length = 0;
    client.currentWatch.fail(new KubeError('WATCH configmaps: 410 Expired: too old', 410, 'Expired'));
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(['delete changed', 'delete new']);
    expect(client.currentWatch.opts.resourceVersion).toBe('12');
    expect(client.listCalls).toBe(3);
    informer.stop();
  });

  it('retries other errors with exponential backoff, relisting, and logs them with the resource', async () => {
    const { client, logs, informer } = setup();
    const failure = new KubeError('GET configmaps: 500 InternalError: etcd is down', 500, 'InternalError');
    client.lists.push(failure, failure, failure);
    client.lists.push({ items: [], resourceVersion: '5' });
    const listedAt: number[] = [];
    const list = client.list.bind(client);
    client.list = () => {
      listedAt.push(Date.now());
      return list();
    };
    informer.start();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(listedAt.slice(1).map((t, i) => t - listedAt[i])).toEqual([200, 400, 800]);
    expect(informer.hasSynced()).toBe(true);
    const errors = logs.filter((l) => l.level === 50) as unknown as {
      resource: string;
      namespace: string;
      retryInMs: number;
      err: { message: string };
    }[];
    expect(errors.map((e) => e.retryInMs)).toEqual([200, 400, 800]);
    expect(errors[0]).toMatchObject({ resource: 'configmaps', namespace: '*', err: { message: failure.message } });
    informer.stop();
  });

  it('does not spin when the watch fails right after every successful list', async () => {
    const { client, informer } = setup();
    for (let i = 0; i < 10; i++) client.lists.push({ items: [], resourceVersion: String(i) });
    informer.start();
    for (let i = 0; i < 4; i++) {
      await vi.advanceTimersByTimeAsync(0);
      client.currentWatch.fail(new KubeError('WATCH configmaps: 403 Forbidden: no watch', 403, 'Forbidden'));
      await vi.advanceTimersByTimeAsync(200 * 2 ** i - 1);
      expect(client.listCalls).toBe(i + 1);
      await vi.advanceTimersByTimeAsync(1);
      expect(client.listCalls).toBe(i + 2);
    }
    informer.stop();
  });

  it('treats a watch that ends at once with nothing delivered as a failure, so that it cannot spin', async () => {
    const { client, informer } = setup();
    client.lists.push({ items: [], resourceVersion: '5' }, { items: [], resourceVersion: '6' });
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    client.currentWatch.end();
    await vi.advanceTimersByTimeAsync(199);
    expect(client.watches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(client.listCalls).toBe(2);
    expect(client.currentWatch.opts.resourceVersion).toBe('6');
    informer.stop();
  });

  it('keeps going when a handler throws', async () => {
    const client = new ScriptedClient();
    const logs: { msg: string }[] = [];
    const seen: string[] = [];
    const informer = new Informer<KubeObject>(
      client as unknown as KubeClient,
      configMap,
      { logger: pino({}, { write: (l: string) => logs.push(JSON.parse(l)) }), watchTimeoutSeconds: 60 },
      {
        onAdd: (o) => {
          seen.push(o.metadata.name);
          if (o.metadata.name === 'bad') throw new Error('handler bug');
        },
      },
    );
    client.lists.push({ items: [cm('a', 'bad', '1'), cm('a', 'good', '2')], resourceVersion: '5' });
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    client.currentWatch.send('ADDED', cm('a', 'bad2', '6'));
    client.currentWatch.send('ADDED', cm('a', 'later', '7'));
    expect(seen).toEqual(['bad', 'good', 'bad2', 'later']);
    expect(logs.filter((l) => l.msg === 'informer handler threw')).toHaveLength(1);
    expect(client.watches).toHaveLength(1);
    informer.stop();
  });

  it('abandons a watch on which nothing arrives for timeoutSeconds + 30 s, and watches again from where it was', async () => {
    const { client, informer } = setup({ watchTimeoutSeconds: 10 });
    client.lists.push({ items: [], resourceVersion: '5' });
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(30_000);
    client.currentWatch.send('BOOKMARK', { metadata: { resourceVersion: '6' } });
    await vi.advanceTimersByTimeAsync(39_999);
    expect(client.watches).toHaveLength(1);
    expect(client.watches[0].opts.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(client.watches[0].opts.signal.aborted).toBe(true);
    expect(client.watches).toHaveLength(2);
    expect(client.currentWatch.opts.resourceVersion).toBe('6');
    expect(client.listCalls).toBe(1);
    informer.stop();
  });

  it('stops for good: aborts the watch and never lists or watches again', async () => {
    const { client, informer } = setup();
    client.lists.push({ items: [], resourceVersion: '5' }, { items: [], resourceVersion: '6' });
    informer.start();
    await vi.advanceTimersByTimeAsync(0);
    informer.stop();
    expect(client.currentWatch.opts.signal.aborted).toBe(true);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(client.watches).toHaveLength(1);
    expect(client.listCalls).toBe(1);
  });

  it('rejects waitForSync when its signal aborts first', async () => {
    const { client, informer } = setup();
    client.lists.push(new Error('down'));
    informer.start();
    const controller = new AbortController();
    const waiting = informer.waitForSync(controller.signal);
    controller.abort(new Error('shutting down'));
    await expect(waiting).rejects.toThrow('shutting down');
    informer.stop();
  });
});
