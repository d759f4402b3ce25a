// The controller's runtime against the real API server: the client's server-side apply, the
// informer's cache through a watch that gets cut, and Lease leader election between replicas.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../ci/wait.ts';
import { KubeClient, KubeError } from '../../controller/src/kube/client.ts';
import { Informer } from '../../controller/src/kube/informer.ts';
import { resources, type KubeObject, type Resource } from '../../controller/src/kube/resources.ts';
import { LeaderElector } from '../../controller/src/runtime/leader.ts';
import { adminConfig, createNamespace, deleteNamespace } from './kube.ts';

const configMap: Resource = { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true };
type ConfigMap = KubeObject & { data?: Record<string, string> };

const logger = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const kc = adminConfig();
let namespace: string;
const proxies: TcpProxy[] = [];

beforeAll(async () => {
  namespace = await createNamespace(kc, 'runtime');
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await deleteNamespace(kc, namespace);
});

interface TcpProxy {
  /** A kubeconfig that reaches the API server through this proxy. */
  kubeConfig: KubeConfig;
  /** Drops every open connection (the other ends see them cut mid-stream). */
  dropConnections(): void;
  /** Drops every connection and refuses new ones: the API server becomes unreachable. */
  cut(): void;
  close(): Promise<void>;
}

/** A TCP proxy in front of the API server (TLS passes through), to cut connections at will. */
async function startProxy(): Promise<TcpProxy> {
  const upstream = new URL(kc.getCurrentCluster()!.server);
  const sockets = new Set<Socket>();
  let refusing = false;
  const server: Server = createServer((downstream) => {
    if (refusing) return downstream.destroy();
    const up = connect(Number(upstream.port), upstream.hostname);
    for (const s of [downstream, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        downstream.destroy();
        up.destroy();
      });
    }
    downstream.pipe(up).pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${port}` })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.getCurrentContext(),
  });
  const dropConnections = () => {
    for (const s of sockets) s.destroy();
  };
  const proxy: TcpProxy = {
    kubeConfig,
    dropConnections,
    cut() {
      refusing = true;
      dropConnections();
    },
    async close() {
      refusing = true;
      dropConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  proxies.push(proxy);
  return proxy;
}

describe('KubeClient', () => {
  it('applies server-side: creates, then leaves an identical object untouched', async () => {
    const writes: string[] = [];
    const client = new KubeClient(kc, { onWrite: (verb, r) => writes.push(`${verb} ${r.plural}`) });
    const body = () => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'applied', namespace, labels: { test: 'apply' } },
      data: { a: '1' },
    });
    const created = await client.apply<ConfigMap>(configMap, body());
    expect(created.metadata.uid).toBeTruthy();
    expect(created.metadata.managedFields).toBeUndefined();
    const again = await client.apply<ConfigMap>(configMap, body());
    expect(again.metadata.resourceVersion).toBe(created.metadata.resourceVersion);
    const changed = await client.apply<ConfigMap>(configMap, { ...body(), data: { a: '2' } } as ConfigMap);
    expect(changed.metadata.resourceVersion).not.toBe(created.metadata.resourceVersion);
    expect(writes).toEqual(['apply configmaps', 'apply configmaps', 'apply configmaps']);

    const got = await client.get<ConfigMap>(configMap, namespace, 'applied');
    expect(got).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap', data: { a: '2' } });
    expect(got!.metadata.managedFields).toBeUndefined();
    expect(await client.get(configMap, namespace, 'absent')).toBeUndefined();

    const listed = await client.list<ConfigMap>(configMap, namespace, { labelSelector: 'test in (apply),!other' });
    expect(listed.items.map((i) => [i.kind, i.metadata.name])).toEqual([['ConfigMap', 'applied']]);
    expect(listed.resourceVersion).toBeTruthy();
  });

  it('applies strings as written, with the characters YAML reads as line breaks or refuses', async () => {
    // Server-side apply bodies are read as YAML, which folds U+0085, U+2028 and U+2029 into a space
    // and refuses the C1 controls: the strings of a model (env, args, paths) must reach the objects whole.
    const client = new KubeClient(kc);
    const data = { nel: 'a\u0085b', separators: 'c\u2028d\u2029e', controls: 'f\u007f\u0080\u009fg', bom: '\ufeffh' };
    const applied = await client.apply<ConfigMap>(configMap, {
      metadata: { name: 'unusual-strings', namespace },
      data,
    } as ConfigMap);
    expect(applied.data).toEqual(data);
  });

  it('rejects an apply that breaks the schema, saying what failed', async () => {
    const client = new KubeClient(kc);
    const route = { destination: { host: 'a' }, weight: 2 ** 31 };
    const err = await client
      .apply(resources.virtualService, {
        metadata: { name: 'bad', namespace },
        spec: { hosts: ['a'], http: [{ route: [route] }] },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeError);
    expect((err as KubeError).code).toBe(422);
    expect((err as KubeError).message).toMatch(
      new RegExp(`^PATCH virtualservices ${namespace}/bad: 422 Invalid: .*weight`),
    );
  });

  it('applies status through the /status subresource, apart from the spec', async () => {
    const client = new KubeClient(kc);
    const vs = (extra: object) => ({ metadata: { name: 'routes', namespace }, ...extra });
    const spec = {
      hosts: ['model.example.com'],
      http: [{ route: [{ destination: { host: 'a', port: { number: 80 } } }] }],
    };
    await client.apply(resources.virtualService, vs({ spec }));
    const status = {
      observedGeneration: 1,
      conditions: [{ type: 'Reconciled', status: 'True', reason: 'Test', message: 'ok' }],
    };
    const withStatus = await client.applyStatus<KubeObject>(resources.virtualService, vs({ status }));
    expect(withStatus.status).toMatchObject(status);
    const again = await client.applyStatus<KubeObject>(resources.virtualService, vs({ status }));
    expect(again.metadata.resourceVersion).toBe(withStatus.metadata.resourceVersion);
    // Status sent to the main resource is ignored; spec sent to /status too.
    await client.apply(resources.virtualService, vs({ spec, status: { observedGeneration: 7 } }));
    const got = await client.get<KubeObject & { status: { observedGeneration: number } }>(
      resources.virtualService,
      namespace,
      'routes',
    );
    expect(got!.status.observedGeneration).toBe(1);
  });

  it('updates with optimistic concurrency and deletes with a uid precondition', async () => {
    const client = new KubeClient(kc);
    const created = await client.create<ConfigMap>(configMap, {
      metadata: { name: 'updated', namespace },
      data: { v: '1' },
    } as ConfigMap);
    const updated = await client.update<ConfigMap>(configMap, { ...created, data: { v: '2' } } as ConfigMap);
    expect(updated.data).toEqual({ v: '2' });
    const stale = await client
      .update(configMap, { ...created, data: { v: '3' } } as ConfigMap)
      .catch((e: unknown) => e);
    expect(stale).toMatchObject({ code: 409, reason: 'Conflict' });
    const duplicate = await client
      .create(configMap, { metadata: { name: 'updated', namespace } })
      .catch((e: unknown) => e);
    expect(duplicate).toMatchObject({ code: 409, reason: 'AlreadyExists' });
    const wrongUid = await client
      .delete(configMap, namespace, 'updated', { uid: 'not-the-uid' })
      .catch((e: unknown) => e);
    expect(wrongUid).toMatchObject({ code: 409 });
    expect(
      await client.delete(configMap, namespace, 'updated', {
        uid: created.metadata.uid,
        propagationPolicy: 'Background',
      }),
    ).toBe(true);
    expect(await client.delete(configMap, namespace, 'updated')).toBe(false);
  });
});

describe('Informer', () => {
  it('caches ConfigMaps through adds, updates and deletes, and recovers when its watch is cut', async () => {
    const admin = new KubeClient(kc);
    const proxy = await startProxy();
    const events: string[] = [];
    const informer = new Informer<ConfigMap>(
      new KubeClient(proxy.kubeConfig),
      configMap,
      { namespace, labelSelector: 'informer=yes', logger, watchTimeoutSeconds: 60 },
      {
        onAdd: (o) => events.push(`add ${o.metadata.name}`),
        onUpdate: (o, old) =>
          o.data?.v !== old.data?.v && events.push(`update ${o.metadata.name} ${old.data?.v}->${o.data?.v}`),
        onDelete: (o) => events.push(`delete ${o.metadata.name}`),
      },
    );
    const cm = (name: string, v: string, labels = { informer: 'yes' }) => ({
      metadata: { name, namespace, labels },
      data: { v },
    });
    await admin.apply(configMap, cm('before', '1'));
    await admin.apply(configMap, cm('unlabelled', '1', { informer: 'no' }));
    informer.start();
    try {
      await informer.waitForSync(AbortSignal.timeout(30_000));
      expect(informer.list(namespace).map((o) => o.metadata.name)).toEqual(['before']);
      expect(events).toEqual(['add before']);

      await admin.apply(configMap, cm('after', '1'));
      await admin.apply(configMap, cm('before', '2'));
      await admin.delete(configMap, namespace, 'after');
      await waitFor(
        'the informer to see add, update and delete',
        30_000,
        async () => (events.length === 4 ? true : undefined),
        () => events.join('\n'),
      );
      expect(events).toEqual(['add before', 'add after', 'update before 1->2', 'delete after']);
      expect(informer.get(namespace, 'before')?.data).toEqual({ v: '2' });
      expect(informer.get(namespace, 'before')?.metadata.managedFields).toBeUndefined();
      expect(informer.get(namespace, 'after')).toBeUndefined();

      // Cut the watch mid-stream and change things while it reconnects: the informer relists and
      // reports exactly what it missed.
      events.length = 0;
      proxy.dropConnections();
      await admin.apply(configMap, cm('while-cut', '1'));
      await admin.apply(configMap, cm('before', '3'));
      await waitFor(
        'the informer to catch up after the cut',
        30_000,
        async () =>
          informer.get(namespace, 'while-cut') && informer.get(namespace, 'before')?.data?.v === '3' ? true : undefined,
        () => events.join('\n'),
      );
      expect(events.sort()).toEqual(['add while-cut', 'update before 2->3']);

      // And it keeps watching afterwards.
      await admin.delete(configMap, namespace, 'while-cut');
      await waitFor('the informer to see a delete after the cut', 30_000, async () =>
        informer.get(namespace, 'while-cut') ? undefined : true,
      );
      expect(events.at(-1)).toBe('delete while-cut');
    } finally {
      informer.stop();
    }
  });
});

describe('LeaderElector', () => {
  const timing = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 };

  it('elects exactly one leader, hands over on release, and is taken over when the leader dies', async () => {
    const lease = { namespace, name: 'ml-operator-leader' };
    const started: string[] = [];
    const stopped: string[] = [];
    const contender = async (identity: string) => {
      const proxy = await startProxy();
      const elector = new LeaderElector(new KubeClient(proxy.kubeConfig), { ...lease, identity, logger, ...timing });
      const leading = elector.run({
        onStartedLeading: () => started.push(identity),
        onStoppedLeading: () => stopped.push(identity),
      });
      return { identity, proxy, elector, leading };
    };
    const leaseHolder = async () =>
      (
        await new KubeClient(kc).get<KubeObject & { spec: { holderIdentity?: string } }>(
          resources.lease,
          namespace,
          lease.name,
        )
      )?.spec.holderIdentity;

    const a = await contender('replica-a');
    const b = await contender('replica-b');
    const first = await Promise.race([a.leading.then(() => a), b.leading.then(() => b)]);
    const second = first === a ? b : a;
    // For well over a lease duration, the other one never leads too.
    const watchUntil = Date.now() + timing.leaseDurationMs + 1_000;
    while (Date.now() < watchUntil) {
      expect([a.elector.isLeader(), b.elector.isLeader()].filter(Boolean)).toHaveLength(1);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(first.elector.isLeader()).toBe(true);
    expect(started).toEqual([first.identity]);
    expect(await leaseHolder()).toBe(first.identity);

    // A released lease is taken at the next retry, not after it expires.
    const releasedAt = Date.now();
    await first.elector.release();
    expect(first.elector.isLeader()).toBe(false);
    await second.leading;
    expect(Date.now() - releasedAt).toBeLessThan(timing.retryPeriodMs + 1_000);
    expect(started).toEqual([first.identity, second.identity]);
    expect(await leaseHolder()).toBe(second.identity);

    // The leader loses the API server for good (as if it crashed): a third replica takes over once
    // the lease expires, and the old leader steps down when its renew deadline passes.
    const third = await contender('replica-c');
    const crashedAt = Date.now();
    second.proxy.cut();
    await third.leading;
    const takeoverMs = Date.now() - crashedAt;
    // Expiry counts from when the third replica last saw the lease change: up to a retry period after
    // the crash, plus the lease duration, plus up to one retry period until its next attempt.
    expect(takeoverMs).toBeGreaterThanOrEqual(timing.leaseDurationMs - timing.retryPeriodMs);
    expect(takeoverMs).toBeLessThan(timing.leaseDurationMs + 2 * timing.retryPeriodMs + 1_000);
    expect(await leaseHolder()).toBe(third.identity);
    await waitFor('the cut-off leader to step down', 10_000, async () =>
      stopped.includes(second.identity) ? true : undefined,
    );
    expect(second.elector.isLeader()).toBe(false);
    expect(stopped).toEqual([second.identity]);

    await third.elector.release();
    await second.elector.release();
    expect(await leaseHolder()).toBe('');
  });
});
