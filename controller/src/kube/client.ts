// A small client for the raw Kubernetes HTTP API: objects go out and come back as plain JSON, never
// through @kubernetes/client-node's typed serializers (which drop or reshape fields they do not know).
// client-node is used only to load the kubeconfig and to produce credentials.
import * as http from 'node:http';
import * as https from 'node:https';
import type { ClusterAccess } from './access.ts';
import { FencedError, KubeError } from './errors.ts';
import {
  applyPatchType,
  collectionPath,
  describe,
  errorFromResponse,
  networkError,
  objectPath,
  readBody,
  requestTimeoutMs,
  retryAfterSeconds,
  signalError,
  trimmed,
  yamlSafeJson,
  type Credentials,
  type RequestSpec,
} from './http.ts';
import { TokenBucket } from './rate-limit.ts';
import { readWatchStream, type WatchEventType } from './watch-stream.ts';
import { apiVersionOf, type KubeObject, type Resource } from './resources.ts';

export { FencedError, KubeError } from './errors.ts';
export { TokenBucket } from './rate-limit.ts';

export interface WriteCounter {
  (verb: 'apply' | 'create' | 'update' | 'delete', resource: Resource, subresource?: 'status'): void;
}

export interface KubeClientOptions {
  fieldManager?: string;
  onWrite?: WriteCounter;
  userAgent?: string;
  /**
   * Client-side rate limit of every request but watches (client-go's token bucket): at most `qps` a
   * second on average, `burst` at once. Unset: no limit.
   */
  rateLimit?: { qps: number; burst: number };
  /** Called for each answer that says "too many requests" (429) or "retry later" (Retry-After), before the retry. */
  onThrottled?: (what: string, retryAfterSeconds: number) => void;
  /**
   * A fence on writes: when it returns false for a write's resource, the write is refused with a
   * FencedError before it is sent (a replica that lost the leader lease must not write).
   */
  mayWrite?: (r: Resource) => boolean;
  /**
   * Sends every write as a server-side dry run (dryRun=All): the API server validates and admits it
   * (schemas, CEL rules, admission) and stores nothing. For checking what would be written.
   */
  dryRun?: boolean;
}

export type { WatchEventType } from './watch-stream.ts';

export interface WatchOptions {
  resourceVersion: string;
  labelSelector?: string;
  timeoutSeconds: number;
  signal: AbortSignal;
}

/**
 * Objects per page of a list. Small pages keep a relist's peak memory down (a page's body and its
 * parsed objects are alive at once, for every informer listing together); the count of requests it
 * adds is small (a thousand endpoints' objects relist in about 80).
 */
const pageSize = 100;
/** Credentials are re-read this often: tokens rotate, and client-node re-reads token files itself. */
const credentialsTtlMs = 5_000;
/** Answers that ask to retry later (429, or a 5xx with Retry-After) are retried this many times, as client-go does. */
const maxThrottledRetries = 10;

export class KubeClient {
  private readonly kc: ClusterAccess;
  private readonly server: URL;
  private readonly fieldManager: string;
  private readonly onWrite: WriteCounter | undefined;
  private readonly mayWrite: ((r: Resource) => boolean) | undefined;
  private readonly userAgent: string;
  private agent: http.Agent | undefined;
  private credentials: { value: Promise<Credentials>; expires: number } | undefined;
  private readonly bucket: TokenBucket | undefined;
  private readonly onThrottled: KubeClientOptions['onThrottled'];
  private readonly dryRun: boolean;

  constructor(kc: ClusterAccess, options: KubeClientOptions = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.kc = kc;
    this.server = new URL(cluster.server);
    this.fieldManager = options.fieldManager ?? 'ml-operator';
    this.onWrite = options.onWrite;
    this.mayWrite = options.mayWrite;
    this.userAgent = options.userAgent ?? 'ml-operator';
    this.bucket = options.rateLimit ? new TokenBucket(options.rateLimit.qps, options.rateLimit.burst) : undefined;
    this.onThrottled = options.onThrottled;
    this.dryRun = options.dryRun ?? false;
  }

  async get<T extends KubeObject>(r: Resource, namespace: string | undefined, name: string): Promise<T | undefined> {
    try {
      const obj = await this.call<T>({
        method: 'GET',
        what: `GET ${describe(r, namespace, name)}`,
        path: objectPath(r, namespace, name),
      });
      return trimmed(obj, r);
    } catch (err) {
      if (err instanceof KubeError && err.code === 404) return undefined;
      throw err;
    }
  }

  /** Whether the API server serves a resource (its group version lists it): optional APIs, such as KEDA's. */
  async served(r: Resource): Promise<boolean> {
    const path = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
    try {
      const list = await this.call<{ resources?: { name: string }[] }>({ method: 'GET', what: `GET ${path}`, path });
      return (list.resources ?? []).some((x) => x.name === r.plural);
    } catch (err) {
      if (err instanceof KubeError && err.code === 404) return false;
      throw err;
    }
  }

  /**
   * Lists in pages; the items all come from one snapshot, whose resourceVersion is returned. With
   * `resourceVersion: '0'` the API server answers from its watch cache, whatever it holds now (a little
   * stale, perhaps): for reads that only explain or estimate, and are read again, this spares etcd a
   * read of every object of the kind in the namespace (API servers before consistent reads from cache).
   */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the item type it reads
  async list<T extends KubeObject>(
    r: Resource,
    namespace: string | undefined,
    opts: { labelSelector?: string; resourceVersion?: '0' } = {},
  ): Promise<{ items: T[]; resourceVersion: string }> {
    const what = `GET ${describe(r, namespace)}`;
    const path = collectionPath(r, namespace);
    const items: T[] = [];
    let continueToken: string | undefined;
    for (;;) {
      type Page = { items: T[] | null; metadata: { resourceVersion: string; continue?: string } };
      let page: Page;
      try {
        page = await this.call<Page>({
          method: 'GET',
          what,
          path,
          query: {
            labelSelector: opts.labelSelector,
            limit: String(pageSize),
            // A continued page belongs to the first page's snapshot: the API server refuses a version with it.
            ...(continueToken ? { continue: continueToken } : { resourceVersion: opts.resourceVersion }),
          },
        });
      } catch (err) {
        // The snapshot behind a continue token expired mid-way: list everything at once, as client-go's pager does.
        if (!(continueToken && err instanceof KubeError && err.code === 410)) throw err;
        const full = await this.call<Page>({
          method: 'GET',
          what,
          path,
          query: { labelSelector: opts.labelSelector, resourceVersion: opts.resourceVersion },
        });
        return { items: (full.items ?? []).map((o) => trimmed(o, r)), resourceVersion: full.metadata.resourceVersion };
      }
      for (const obj of page.items ?? []) items.push(trimmed(obj, r));
      continueToken = page.metadata.continue;
      if (!continueToken) return { items, resourceVersion: page.metadata.resourceVersion };
    }
  }

  /** Server-side apply (PATCH application/apply-patch+yaml with a JSON body), force=true, fieldValidation=Strict. */
  /** Server-side apply, as this client's field manager or, to share ownership of some fields, another one. */
  apply<T extends KubeObject>(r: Resource, obj: KubeObject, fieldManager?: string): Promise<T> {
    return this.serverSideApply<T>(r, obj, undefined, fieldManager);
  }

  /** Server-side apply on the /status subresource. */
  applyStatus<T extends KubeObject>(r: Resource, obj: KubeObject): Promise<T> {
    return this.serverSideApply<T>(r, obj, 'status');
  }

  async create<T extends KubeObject>(r: Resource, obj: KubeObject): Promise<T> {
    const namespace = obj.metadata.namespace;
    const created = await this.call<T>({
      method: 'POST',
      what: `POST ${describe(r, namespace, obj.metadata.name)}`,
      write: { verb: 'create', resource: r },
      path: collectionPath(r, namespace),
      query: { fieldManager: this.fieldManager, fieldValidation: 'Strict' },
      body: { apiVersion: apiVersionOf(r), kind: r.kind, ...obj },
    });
    return trimmed(created, r);
  }

  /** PUT with optimistic concurrency on metadata.resourceVersion: a stale one fails with code 409. */
  async update<T extends KubeObject>(r: Resource, obj: KubeObject): Promise<T> {
    const { name, namespace } = obj.metadata;
    const path = objectPath(r, namespace, name);
    const updated = await this.call<T>({
      method: 'PUT',
      what: `PUT ${describe(r, namespace, name)}`,
      write: { verb: 'update', resource: r },
      path,
      query: { fieldManager: this.fieldManager, fieldValidation: 'Strict' },
      body: { apiVersion: apiVersionOf(r), kind: r.kind, ...obj },
    });
    return trimmed(updated, r);
  }

  /** Returns false when the object did not exist. */
  async delete(
    r: Resource,
    namespace: string | undefined,
    name: string,
    opts: {
      propagationPolicy?: 'Background' | 'Foreground' | 'Orphan';
      uid?: string;
      gracePeriodSeconds?: number;
    } = {},
  ): Promise<boolean> {
    const path = objectPath(r, namespace, name);
    try {
      await this.call({
        method: 'DELETE',
        what: `DELETE ${describe(r, namespace, name)}`,
        write: { verb: 'delete', resource: r },
        path,
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          ...(opts.propagationPolicy && { propagationPolicy: opts.propagationPolicy }),
          ...(opts.uid && { preconditions: { uid: opts.uid } }),
          ...(opts.gracePeriodSeconds !== undefined && { gracePeriodSeconds: opts.gracePeriodSeconds }),
        },
      });
      return true;
    } catch (err) {
      if (err instanceof KubeError && err.code === 404) return false;
      throw err;
    }
  }

  /**
   * Raw watch stream (with bookmarks): calls onEvent per decoded line; resolves when the server ends
   * the stream; rejects on error, when onEvent throws, and with the signal's reason when it aborts.
   */
  async watch(
    r: Resource,
    namespace: string | undefined,
    opts: WatchOptions,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each caller reads the events as its resource's type
    onEvent: (type: WatchEventType, object: any) => void,
  ): Promise<void> {
    const what = `WATCH ${describe(r, namespace)}`;
    const query = {
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: opts.resourceVersion,
      labelSelector: opts.labelSelector,
      timeoutSeconds: String(opts.timeoutSeconds),
    };
    const res = await this.send({ method: 'GET', what, path: collectionPath(r, namespace), query }, opts.signal);
    if (res.statusCode !== 200) {
      const body = await readBody(what, res, opts.signal);
      throw errorFromResponse(what, res.statusCode ?? 0, res.statusMessage ?? '', body);
    }
    await readWatchStream(what, res, r, opts.signal, onEvent);
  }

  private async serverSideApply<T extends KubeObject>(
    r: Resource,
    obj: KubeObject,
    subresource?: 'status',
    fieldManager = this.fieldManager,
  ): Promise<T> {
    const { name, namespace } = obj.metadata;
    const path = objectPath(r, namespace, name) + (subresource ? `/${subresource}` : '');
    const applied = await this.call<T>({
      method: 'PATCH',
      what: `PATCH ${describe(r, namespace, name, subresource)}`,
      write: { verb: 'apply', resource: r, subresource },
      path,
      query: { fieldManager, force: 'true', fieldValidation: 'Strict' },
      body: { apiVersion: apiVersionOf(r), kind: r.kind, ...obj },
      contentType: applyPatchType,
    });
    return trimmed(applied, r);
  }

  private async call<T>(request: RequestSpec): Promise<T> {
    const spec = request.write && this.dryRun ? { ...request, query: { ...request.query, dryRun: 'All' } } : request;
    let res: http.IncomingMessage;
    let body: string;
    for (let attempt = 0; ; attempt++) {
      const wait = this.bucket?.reserve() ?? 0;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const signal = AbortSignal.timeout(requestTimeoutMs);
      res = await this.send(spec, signal);
      body = await readBody(spec.what, res, signal);
      // The API server's priority and fairness (or an overloaded server) asks to come back later:
      // the request was not processed, so sending it again is safe, writes included.
      const retryAfter = retryAfterSeconds(res);
      if (attempt >= maxThrottledRetries || retryAfter === undefined) break;
      this.onThrottled?.(spec.what, retryAfter);
      await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000));
    }
    const code = res.statusCode ?? 0;
    if (code < 200 || code >= 300) throw errorFromResponse(spec.what, code, res.statusMessage ?? '', body);
    try {
      return JSON.parse(body) as T;
    } catch {
      throw new Error(`${spec.what}: ${code} but the body is not JSON: ${body.slice(0, 200)}`);
    }
  }

  /** Sends the request and resolves with the response once its headers arrive. */
  private async send(spec: RequestSpec, signal: AbortSignal): Promise<http.IncomingMessage> {
    const credentials = await this.currentCredentials();
    const agent = (this.agent ??=
      this.server.protocol === 'https:'
        ? new https.Agent({ ...credentials.tls, keepAlive: true })
        : new http.Agent({ keepAlive: true }));
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(spec.query ?? {}))
      if (value !== undefined && value !== '') query.set(key, value);
    const basePath = this.server.pathname.replace(/\/$/, '');
    const search = query.size > 0 ? `?${query.toString()}` : '';
    const body =
      spec.body === undefined
        ? undefined
        : spec.contentType === applyPatchType
          ? yamlSafeJson(spec.body)
          : JSON.stringify(spec.body);
    const headers: Record<string, string> = {
      ...credentials.headers,
      Accept: 'application/json',
      'User-Agent': this.userAgent,
    };
    if (body !== undefined) {
      headers['Content-Type'] = spec.contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const options: https.RequestOptions = {
      protocol: this.server.protocol,
      hostname: this.server.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: this.server.port || undefined,
      method: spec.method,
      path: `${basePath}${spec.path}${search}`,
      headers,
      agent,
      auth: credentials.auth,
      signal,
    };
    const request = this.server.protocol === 'https:' ? https.request : http.request;
    if (spec.write) {
      if (this.mayWrite && !this.mayWrite(spec.write.resource)) throw new FencedError(spec.what);
      this.onWrite?.(spec.write.verb, spec.write.resource, spec.write.subresource);
    }
    return new Promise((resolve, reject) => {
      const req = request(options, (res) => {
        if (res.statusCode === 401) this.credentials = undefined;
        resolve(res);
      });
      req.on('error', (err) => reject(signal.aborted ? signalError(spec.what, signal) : networkError(spec.what, err)));
      req.end(body);
    });
  }

  private currentCredentials(): Promise<Credentials> {
    const now = Date.now();
    if (this.credentials && this.credentials.expires > now) return this.credentials.value;
    const value = this.loadCredentials();
    this.credentials = { value, expires: now + credentialsTtlMs };
    value.catch(() => (this.credentials = undefined));
    return value;
  }

  private async loadCredentials(): Promise<Credentials> {
    const opts: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(opts.headers ?? {}))
      if (value !== undefined) headers[key] = String(value);
    const tls: https.AgentOptions = {};
    for (const key of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'] as const) {
      if (opts[key] !== undefined) Object.assign(tls, { [key]: opts[key] });
    }
    return { headers, auth: opts.auth ?? undefined, tls };
  }
}
