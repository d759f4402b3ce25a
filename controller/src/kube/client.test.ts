// The client against a fake API server on plain HTTP: what it sends (paths, queries, content types,
// credentials) and how it reads what comes back. The real API server is in test/integration.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FencedError, KubeClient, KubeError, TokenBucket } from './client.ts';
import { resources, type Resource } from './resources.ts';

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
}

const configMap: Resource = { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true };

let server: Server;
let seen: Seen[];
let respond: (req: Seen, res: ServerResponse) => void;
let kc: KubeConfig;

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

beforeEach(async () => {
  seen = [];
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url!, 'http://x');
      const s = { method: req.method!, path: url.pathname, query: url.searchParams, headers: req.headers, body };
      seen.push(s);
      respond(s, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}/prefix`, skipTLSVerify: true },
    ],
    users: [{ name: 'u', token: 'secret-token' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('KubeClient', () => {
  it('builds paths for core and grouped, namespaced and cluster-scoped resources', async () => {
    respond = (_, res) => json(res, 200, { metadata: { name: 'x' } });
    const client = new KubeClient(kc);
    await client.get(configMap, 'ns', 'a');
    await client.get(resources.deployment, 'ns', 'b');
    await client.get(resources.persistentVolume, undefined, 'pv');
    await client.get(resources.lease, 'kube-system', 'with.dots');
    expect(seen.map((s) => s.path)).toEqual([
      '/prefix/api/v1/namespaces/ns/configmaps/a',
      '/prefix/apis/apps/v1/namespaces/ns/deployments/b',
      '/prefix/api/v1/persistentvolumes/pv',
      '/prefix/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/with.dots',
    ]);
    expect(seen[0].headers.authorization).toBe('Bearer secret-token');
    expect(seen[0].headers['user-agent']).toBe('ml-operator');
  });

  it('returns undefined for a missing object, and strips managedFields from what it returns', async () => {
    respond = (req, res) =>
      req.path.endsWith('/missing')
        ? json(res, 404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'configmaps "missing" not found' })
        : json(res, 200, { metadata: { name: 'here', managedFields: [{ manager: 'x' }] } });
    const client = new KubeClient(kc);
    expect(await client.get(configMap, 'ns', 'missing')).toBeUndefined();
    expect(await client.get(configMap, 'ns', 'here')).toEqual({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'here' },
    });
  });

  it('lists page by page, with an encoded label selector, and fills in apiVersion and kind', async () => {
    respond = (req, res) => {
      const next = req.query.get('continue');
      if (!next) {
        json(res, 200, {
          metadata: { resourceVersion: '10', continue: 'page2' },
          items: [{ metadata: { name: 'a', managedFields: [] } }],
        });
        return;
      }
      json(res, 200, { metadata: { resourceVersion: '10' }, items: [{ metadata: { name: 'b' } }] });
    };
    const client = new KubeClient(kc);
    const list = await client.list(resources.deployment, undefined, { labelSelector: 'app in (a,b),!legacy' });
    expect(list).toEqual({
      resourceVersion: '10',
      items: [
        { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'a' } },
        { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'b' } },
      ],
    });
    expect(seen.map((s) => s.path)).toEqual(['/prefix/apis/apps/v1/deployments', '/prefix/apis/apps/v1/deployments']);
    expect(seen[0].query.get('labelSelector')).toBe('app in (a,b),!legacy');
    expect(seen[0].query.get('limit')).toBe('100');
    expect(seen[1].query.get('continue')).toBe('page2');
  });

  it("asks for the watch cache's copy with resourceVersion 0, on the first page only", async () => {
    respond = (req, res) => {
      if (!req.query.get('continue')) {
        json(res, 200, {
          metadata: { resourceVersion: '10', continue: 'page2' },
          items: [{ metadata: { name: 'a' } }],
        });
        return;
      }
      json(res, 200, { metadata: { resourceVersion: '10' }, items: [{ metadata: { name: 'b' } }] });
    };
    const list = await new KubeClient(kc).list(configMap, 'ns', { labelSelector: 'x=y', resourceVersion: '0' });
    expect(list.items.map((i) => i.metadata.name)).toEqual(['a', 'b']);
    expect(seen.map((s) => s.query.get('resourceVersion'))).toEqual(['0', null]);
    expect(seen[1].query.get('continue')).toBe('page2');
  });

  it('lists everything at once when the continue token expires', async () => {
    respond = (req, res) => {
      if (req.query.get('continue')) {
        json(res, 410, { kind: 'Status', code: 410, reason: 'Expired', message: 'too old' });
        return;
      }
      if (req.query.get('limit')) {
        json(res, 200, { metadata: { resourceVersion: '5', continue: 'c' }, items: [{ metadata: { name: 'a' } }] });
        return;
      }
      json(res, 200, {
        metadata: { resourceVersion: '9' },
        items: [{ metadata: { name: 'a' } }, { metadata: { name: 'b' } }],
      });
    };
    const list = await new KubeClient(kc).list(configMap, 'ns');
    expect(list.resourceVersion).toBe('9');
    expect(list.items.map((i) => i.metadata.name)).toEqual(['a', 'b']);
  });

  it('applies server-side with its field manager, force and strict validation, and counts the write', async () => {
    respond = (req, res) => json(res, 200, JSON.parse(req.body));
    const writes: string[] = [];
    const client = new KubeClient(kc, {
      fieldManager: 'tester',
      onWrite: (verb, r) => writes.push(`${verb} ${r.plural}`),
    });
    const applied = await client.apply(configMap, {
      metadata: { name: 'a', namespace: 'ns' },
      data: { k: 'v' },
    } as never);
    await client.applyStatus(resources.endpoint, {
      metadata: { name: 'e', namespace: 'ns' },
      status: { phase: 'Ready' },
    });
    expect(applied).toEqual({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'a', namespace: 'ns' },
      data: { k: 'v' },
    });
    expect(seen[0]).toMatchObject({ method: 'PATCH', path: '/prefix/api/v1/namespaces/ns/configmaps/a' });
    expect(seen[0].headers['content-type']).toBe('application/apply-patch+yaml');
    expect(Object.fromEntries(seen[0].query)).toEqual({
      fieldManager: 'tester',
      force: 'true',
      fieldValidation: 'Strict',
    });
    expect(seen[1].path).toMatch(/^\/prefix\/apis\/[^/]+\/[^/]+\/namespaces\/ns\/machinelearningendpoints\/e\/status$/);
    expect(writes).toEqual(['apply configmaps', 'apply machinelearningendpoints']);
  });

  it('sends no write its fence refuses, and reads and fenced-in writes as usual', async () => {
    respond = (req, res) => json(res, 200, req.body ? JSON.parse(req.body) : { metadata: { name: 'a' } });
    let leading = false;
    const writes: string[] = [];
    const client = new KubeClient(kc, {
      onWrite: (verb, r) => writes.push(`${verb} ${r.plural}`),
      mayWrite: (r) => leading || r === resources.lease,
    });
    await expect(client.apply(configMap, { metadata: { name: 'a', namespace: 'ns' } })).rejects.toThrow(FencedError);
    await expect(client.delete(configMap, 'ns', 'a')).rejects.toThrow(/PATCH|DELETE/);
    await expect(client.delete(configMap, 'ns', 'a')).rejects.toThrow(/does not hold the leader lease/);
    await client.get(configMap, 'ns', 'a');
    await client.update(resources.lease, { metadata: { name: 'l', namespace: 'ns' } });
    leading = true;
    await client.apply(configMap, { metadata: { name: 'a', namespace: 'ns' } });
    expect(seen.map((r) => r.method)).toEqual(['GET', 'PUT', 'PATCH']);
    expect(writes).toEqual(['update leases', 'apply configmaps']);
  });

  it('creates, updates and deletes, with preconditions and propagation policy', async () => {
    respond = (req, res) => {
      if (req.method === 'DELETE' && req.path.endsWith('/gone')) {
        json(res, 404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' });
        return;
      }
      if (req.method === 'PUT') {
        json(res, 409, { kind: 'Status', code: 409, reason: 'Conflict', message: 'the object has been modified' });
        return;
      }
      json(res, req.method === 'POST' ? 201 : 200, req.body ? JSON.parse(req.body) : {});
    };
    const writes: string[] = [];
    const client = new KubeClient(kc, { onWrite: (verb) => writes.push(verb) });
    await client.create(configMap, { metadata: { name: 'a', namespace: 'ns' } });
    const conflict = await client
      .update(configMap, { metadata: { name: 'a', namespace: 'ns', resourceVersion: '3' } })
      .catch((e: unknown) => e);
    expect(await client.delete(configMap, 'ns', 'a', { propagationPolicy: 'Foreground', uid: 'u1' })).toBe(true);
    expect(await client.delete(configMap, 'ns', 'gone')).toBe(false);
    expect(seen.map((s) => `${s.method} ${s.path}`)).toEqual([
      'POST /prefix/api/v1/namespaces/ns/configmaps',
      'PUT /prefix/api/v1/namespaces/ns/configmaps/a',
      'DELETE /prefix/api/v1/namespaces/ns/configmaps/a',
      'DELETE /prefix/api/v1/namespaces/ns/configmaps/gone',
    ]);
    expect(JSON.parse(seen[1].body).metadata.resourceVersion).toBe('3');
    expect(JSON.parse(seen[2].body)).toMatchObject({ propagationPolicy: 'Foreground', preconditions: { uid: 'u1' } });
    expect(conflict).toBeInstanceOf(KubeError);
    expect(conflict).toMatchObject({
      code: 409,
      reason: 'Conflict',
      message: 'PUT configmaps ns/a: 409 Conflict: the object has been modified',
    });
    expect(writes).toEqual(['create', 'update', 'delete', 'delete']);
  });

  it('sends every write, and only writes, as a server-side dry run when asked', async () => {
    respond = (req, res) => json(res, 200, req.body ? JSON.parse(req.body) : { metadata: { name: 'a' } });
    const client = new KubeClient(kc, { dryRun: true });
    await client.get(configMap, 'ns', 'a');
    await client.apply(configMap, { metadata: { name: 'a', namespace: 'ns' } });
    await client.applyStatus(resources.endpoint, { metadata: { name: 'e', namespace: 'ns' }, status: {} });
    await client.create(configMap, { metadata: { name: 'b', namespace: 'ns' } });
    await client.delete(configMap, 'ns', 'a');
    expect(seen.map((s) => `${s.method} ${s.query.get('dryRun')}`)).toEqual([
      'GET null',
      'PATCH All',
      'PATCH All',
      'POST All',
      'DELETE All',
    ]);
    expect(seen[1].query.get('fieldValidation')).toBe('Strict');
  });

  it('says what failed, from the Status the server returned', async () => {
    respond = (_, res) =>
      json(res, 422, {
        kind: 'Status',
        code: 422,
        reason: 'Invalid',
        message: 'spec.replicas: Invalid value',
        details: { name: 'foo' },
      });
    const err = await new KubeClient(kc)
      .apply(resources.deployment, { metadata: { name: 'foo', namespace: 'default' } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 422,
      reason: 'Invalid',
      details: { name: 'foo' },
      message: 'PATCH deployments default/foo: 422 Invalid: spec.replicas: Invalid value',
    });
  });

  it('decodes a watch stream split at any byte, and resolves when the server ends it', async () => {
    respond = (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const lines =
        [
          {
            type: 'ADDED',
            object: {
              kind: 'ConfigMap',
              apiVersion: 'v1',
              metadata: { name: 'é', resourceVersion: '2', managedFields: [] },
            },
          },
          { type: 'BOOKMARK', object: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: '3' } } },
          {
            type: 'DELETED',
            object: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'é', resourceVersion: '4' } },
          },
        ]
          .map((e) => JSON.stringify(e))
          .join('\n') + '\n';
      const bytes = Buffer.from(lines);
      for (let i = 0; i < bytes.length; i += 7) res.write(bytes.subarray(i, i + 7));
      res.end();
    };
    const events: unknown[] = [];
    await new KubeClient(kc).watch(
      configMap,
      'ns',
      { resourceVersion: '1', labelSelector: 'a=b', timeoutSeconds: 30, signal: new AbortController().signal },
      (type, object) => events.push([type, object.metadata]),
    );
    expect(events).toEqual([
      ['ADDED', { name: 'é', resourceVersion: '2' }],
      ['BOOKMARK', { resourceVersion: '3' }],
      ['DELETED', { name: 'é', resourceVersion: '4' }],
    ]);
    expect(Object.fromEntries(seen[0].query)).toEqual({
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: '1',
      labelSelector: 'a=b',
      timeoutSeconds: '30',
    });
  });

  it('rejects a watch the server refuses, with its status code', async () => {
    respond = (_, res) =>
      json(res, 410, { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' });
    const err = await new KubeClient(kc)
      .watch(
        configMap,
        'ns',
        { resourceVersion: '1', timeoutSeconds: 30, signal: new AbortController().signal },
        () => {},
      )
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 410, reason: 'Expired' });
  });

  it('rejects a watch with the abort reason when the caller aborts it, and when the handler throws', async () => {
    respond = (_, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a', resourceVersion: '2' } } })}\n`);
    };
    const client = new KubeClient(kc);
    const controller = new AbortController();
    const aborted = client.watch(
      configMap,
      'ns',
      { resourceVersion: '1', timeoutSeconds: 30, signal: controller.signal },
      () => controller.abort(new Error('enough')),
    );
    await expect(aborted).rejects.toThrow('enough');
    const throwing = client.watch(
      configMap,
      'ns',
      { resourceVersion: '1', timeoutSeconds: 30, signal: new AbortController().signal },
      () => {
        throw new Error('handler failed');
      },
    );
    await expect(throwing).rejects.toThrow('handler failed');
  });

  it('rejects a watch whose connection drops mid-stream', async () => {
    respond = (_, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a', resourceVersion: '2' } } })}\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const events: string[] = [];
    const err = await new KubeClient(kc)
      .watch(
        configMap,
        'ns',
        { resourceVersion: '1', timeoutSeconds: 30, signal: new AbortController().signal },
        (type) => events.push(type),
      )
      .catch((e: unknown) => e);
    expect(events).toEqual(['ADDED']);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^WATCH configmaps ns: /);
  });
});

describe('KubeClient throttling', () => {
  it('retries what the API server answers 429 to after its Retry-After, and reports each', async () => {
    let answered = 0;
    respond = (_, res) => {
      if (answered++ < 2) {
        res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '0' });
        res.end(
          JSON.stringify({
            kind: 'Status',
            code: 429,
            reason: 'TooManyRequests',
            message: 'too many requests, please try again later',
          }),
        );
      } else json(res, 200, { metadata: { name: 'x' } });
    };
    const throttled: string[] = [];
    const writes: string[] = [];
    const client = new KubeClient(kc, {
      onThrottled: (what, s) => throttled.push(`${what} ${s}`),
      onWrite: (verb, r, sub) => writes.push(`${verb} ${r.plural}${sub ? `/${sub}` : ''}`),
    });
    await client.applyStatus(configMap, { metadata: { name: 'x', namespace: 'ns' } });
    expect(seen).toHaveLength(3);
    expect(throttled).toEqual(['PATCH configmaps/status ns/x 0', 'PATCH configmaps/status ns/x 0']);
    expect(writes).toEqual(['apply configmaps/status', 'apply configmaps/status', 'apply configmaps/status']);
  });

  it('gives up after ten retries with the API server’s error', async () => {
    respond = (_, res) => {
      res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '0' });
      res.end(JSON.stringify({ kind: 'Status', code: 429, reason: 'TooManyRequests', message: 'too many requests' }));
    };
    const client = new KubeClient(kc);
    await expect(client.get(configMap, 'ns', 'x')).rejects.toMatchObject({ code: 429, reason: 'TooManyRequests' });
    expect(seen).toHaveLength(11);
  });

  it('does not retry a 5xx that does not ask for it', async () => {
    respond = (_, res) => json(res, 500, { kind: 'Status', code: 500, reason: 'InternalError', message: 'boom' });
    await expect(new KubeClient(kc).get(configMap, 'ns', 'x')).rejects.toMatchObject({ code: 500 });
    expect(seen).toHaveLength(1);
  });
});

describe('TokenBucket', () => {
  it('lets a burst through at once, then spaces requests at the rate', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 3, () => now);
    expect([bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([0, 0, 0]);
    // Past the burst, each request reserves the next turn: 100 ms apart at 10 a second.
    expect(bucket.reserve()).toBeCloseTo(100);
    expect(bucket.reserve()).toBeCloseTo(200);
    now = 1000;
    // A second later the bucket has refilled by 10, minus the 2 reserved: full again (3).
    expect([bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([0, 0, 0]);
    expect(bucket.reserve()).toBeCloseTo(100);
  });

  it('refuses a rate that cannot work', () => {
    expect(() => new TokenBucket(0, 1)).toThrow(/qps must be positive/);
  });
});
