// The wire under the client: the paths of the API, the bodies of server-side apply, the answers that
// ask to retry, and the errors of a request that failed, said with what was asked.
import type * as http from 'node:http';
import type * as https from 'node:https';
import { KubeError } from './errors.ts';
import { apiVersionOf, type KubeObject, type Resource } from './resources.ts';

export interface Credentials {
  headers: Record<string, string>;
  /** user:password for basic auth. */
  auth?: string;
  tls: https.AgentOptions;
}

export interface RequestSpec {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** "PATCH deployments default/foo": the prefix of every error message about this call. */
  what: string;
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  contentType?: string;
  /** Set on writes, which are counted once sent. */
  write?: { verb: 'apply' | 'create' | 'update' | 'delete'; resource: Resource; subresource?: 'status' };
}

/** Bounds every call but watches, so that a dead connection cannot hang a reconcile forever. */
export const requestTimeoutMs = 60_000;
/** The longest Retry-After honoured as given; a longer one is waited this long, then retried. */
export const maxRetryAfterSeconds = 30;

/** Drops metadata.managedFields (large, and nothing here reads it) and fills in apiVersion/kind. */
export function trimmed<T extends KubeObject>(obj: T, r: Resource): T {
  if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
  obj.apiVersion ??= apiVersionOf(r);
  obj.kind ??= r.kind;
  return obj;
}

export const applyPatchType = 'application/apply-patch+yaml';

/**
 * JSON for a body the API server reads as YAML (server-side apply). YAML folds U+0085, U+2028 and
 * U+2029 inside a string into a space and refuses DEL, the C1 controls and U+FEFF, U+FFFE, U+FFFF,
 * all of which JSON leaves as they are; escaped (they only occur inside strings), they arrive whole.
 */
export function yamlSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export function collectionPath(r: Resource, namespace: string | undefined): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${r.plural}`;
}

export function objectPath(r: Resource, namespace: string | undefined, name: string): string {
  if (r.namespaced && !namespace) throw new Error(`${r.plural} ${name}: a namespace is required`);
  if (!name) throw new Error(`${r.plural}: a name is required`);
  return `${collectionPath(r, namespace)}/${encodeURIComponent(name)}`;
}

export function describe(r: Resource, namespace: string | undefined, name?: string, subresource?: string): string {
  const resource = subresource ? `${r.plural}/${subresource}` : r.plural;
  const target = r.namespaced ? [namespace ?? '(all namespaces)', name].filter(Boolean).join('/') : (name ?? '');
  return target ? `${resource} ${target}` : resource;
}

export function errorFromResponse(what: string, code: number, statusText: string, body: string): KubeError {
  let status: { kind?: string; message?: string; reason?: string; details?: unknown } | undefined;
  try {
    status = JSON.parse(body) as typeof status;
  } catch {
    status = undefined;
  }
  const reason = status?.reason || statusText || 'Unknown';
  const message = status?.message || body.trim().slice(0, 500) || statusText;
  return new KubeError(`${what}: ${code} ${reason}: ${message}`, code, reason, status?.details);
}

/**
 * A connection failure, saying what failed; the socket error's message is in it and its code (say
 * ECONNREFUSED) kept, but not the error itself as `cause`, which logs would print a second time.
 */
export function networkError(what: string, err: Error & { code?: string }): Error {
  return Object.assign(new Error(`${what}: ${err.message}`), err.code ? { code: err.code } : {});
}

/** A request timeout reads as such; a caller's own abort keeps the reason the caller gave. */
export function signalError(what: string, signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (reason instanceof DOMException && reason.name === 'TimeoutError')
    return new Error(`${what}: no response within ${requestTimeoutMs / 1000}s`);
  return reason;
}

/** Seconds to wait before a retry when the answer asks for one (429, or 5xx with Retry-After); undefined otherwise. */
export function retryAfterSeconds(res: http.IncomingMessage): number | undefined {
  const code = res.statusCode ?? 0;
  const header = res.headers['retry-after'];
  const given = header !== undefined && /^\d+$/.test(header.trim()) ? Number(header) : undefined;
  if (code === 429) return Math.min(given ?? 1, maxRetryAfterSeconds);
  if (code >= 500 && given !== undefined) return Math.min(given, maxRetryAfterSeconds);
  return undefined;
}

export function readBody(what: string, res: http.IncomingMessage, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', (err) => reject(signal.aborted ? signalError(what, signal) : networkError(what, err)));
    res.on('close', () => {
      if (!res.complete)
        reject(signal.aborted ? signalError(what, signal) : new Error(`${what}: the connection closed mid-response`));
    });
    if (res.destroyed && !res.complete)
      reject(signal.aborted ? signalError(what, signal) : new Error(`${what}: the connection closed mid-response`));
  });
}
