// Sources: http(s):// downloads (redirects, never from https to http; credentials kept to the first
// origin), s3://, gs:// and Azure Blob downloads through their providers' SDKs (stores.ts), all with
// the same retries, size bound and digest; and pvc:// copies from a claim mounted read-only.
import { cp, realpath, stat } from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FetchError } from './errors.ts';
import { safeBasename } from './install.ts';
import type { Env, Log } from './log.ts';
import { redactUri, type ArtifactSource } from './uri.ts';
import { digestingStream, measureTree, tooLarge, type DownloadResult, type Limits } from './verify.ts';

export const defaultArtifactSourceRoot = '/mnt/artifact-source';
export const defaultRetryDelaysMs = [1000, 2000];
export const maxRedirects = 5;

interface Hop {
  url: URL;
  /** Path and query exactly as sent (not normalised: S3 keys may contain '..'). */
  path: string;
}

export interface DownloadRequest {
  /** The first URL; `path` overrides its path and query on the wire. */
  url: URL;
  path?: string;
  /** Sent on every hop. */
  headers?: Record<string, string>;
  /** Sent only to the first URL's origin (scheme, host, port), never to another host on redirect. */
  credentials?: Record<string, string>;
}

export interface DownloadContext {
  source: ArtifactSource;
  env: Env;
  log: Log;
  timeoutMs: number;
  retryDelaysMs: number[];
  maxBytes?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Downloads to `file` with up to 3 attempts: retries network errors, 5xx and 429; other failures are final. */
export async function downloadWithRetries(
  req: DownloadRequest,
  file: string,
  ctx: DownloadContext,
): Promise<DownloadResult> {
  return withRetries(ctx, (attempt) => downloadOnce(req, file, ctx, attempt));
}

/** An object in a store, opened: its body as a stream and its size when the store tells it. */
export interface OpenedObject {
  body: Readable;
  bytes?: number;
}

/**
 * Downloads an object that `open` opens (an SDK's GET) to `file`, with the same attempts, bound and
 * digest as an http(s) download. `open` throws a FetchError that says what went wrong; errors while
 * the body streams are network errors, retried.
 */
export async function downloadFromStore(
  open: () => Promise<OpenedObject>,
  file: string,
  ctx: DownloadContext,
  translate?: (e: unknown) => FetchError | undefined,
): Promise<DownloadResult> {
  return withRetries(ctx, async (attempt) => {
    const { body, bytes } = await open();
    try {
      return await saveBody(body, bytes, file, ctx, attempt);
    } catch (e) {
      // A store may report a refusal through the body stream (the Cloud Storage client does).
      throw (e instanceof FetchError ? undefined : translate?.(e)) ?? e;
    }
  });
}

async function withRetries(
  ctx: DownloadContext,
  once: (attempt: number) => Promise<DownloadResult>,
): Promise<DownloadResult> {
  const attempts = ctx.retryDelaysMs.length + 1;
  for (let attempt = 1; ; attempt++) {
    try {
      return await once(attempt);
    } catch (e) {
      const err = e instanceof FetchError ? e : networkError(e, ctx.source);
      if (!err.retryable || attempt >= attempts) {
        if (err.retryable) err.message += ` (after ${attempts} attempts)`;
        throw err;
      }
      const delay = ctx.retryDelaysMs[attempt - 1];
      ctx.log('warn', 'retrying', {
        uri: redactUri(ctx.source.uri),
        attempt,
        of: attempts,
        delayMs: delay,
        error: err.message,
      });
      await sleep(delay);
    }
  }
}

/** Streams a response body to `file` through the size bound and the digest. */
async function saveBody(
  body: Readable,
  expected: number | undefined,
  file: string,
  ctx: DownloadContext,
  attempt: number,
): Promise<DownloadResult> {
  const { source, log } = ctx;
  if (ctx.maxBytes !== undefined && expected !== undefined && expected > ctx.maxBytes) {
    body.destroy();
    throw tooLarge(source.uri, ctx.maxBytes, `the server announces ${expected} bytes`);
  }
  log('info', 'fetching', { uri: redactUri(source.uri), attempt, bytes: expected ?? null });
  const counter = digestingStream(ctx.maxBytes === undefined ? undefined : { maxBytes: ctx.maxBytes, uri: source.uri });
  await pipeline(body, counter.stream, createWriteStream(file));
  const result = counter.result();
  if (expected !== undefined && result.bytes !== expected) {
    throw new FetchError(
      `network error fetching ${redactUri(source.uri)}: got ${result.bytes} of ${expected} bytes`,
      true,
    );
  }
  return result;
}

const localErrors = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO']);

export function networkError(e: unknown, source: ArtifactSource): FetchError {
  const err = e as NodeJS.ErrnoException;
  const detail = [err?.code, err?.message].filter(Boolean).join(' ');
  if (err?.code && localErrors.has(err.code) && err.syscall !== 'connect') {
    return new FetchError(
      `writing ${redactUri(source.uri)} to the model volume failed (${detail}): check the variant's size and that the volume is writable by the fetcher`,
    );
  }
  return new FetchError(
    `network error fetching ${redactUri(source.uri)} (${detail || String(e)}): check the host name, the port and the pod's network access (egress policy, proxy)`,
    true,
  );
}

function request(hop: Hop, headers: Record<string, string>, timeoutMs: number): Promise<http.IncomingMessage> {
  const { url } = hop;
  const mod = url.protocol === 'https:' ? https : http;
  const auth = url.username ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : undefined;
  return new Promise((resolvePromise, reject) => {
    const req = mod.request({
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || undefined,
      path: hop.path,
      method: 'GET',
      headers: { ...headers, host: url.host },
      auth,
      agent: false,
      timeout: timeoutMs,
    });
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error(`no data for ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    req.on('response', resolvePromise);
    req.end();
  });
}

async function readSnippet(res: http.IncomingMessage, limit = 4096): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit) break;
    }
  } catch {
    // the status is what matters
  }
  res.destroy();
  return Buffer.concat(chunks).toString('utf8').slice(0, limit);
}

/** The server's error code and message from an XML or JSON error body, if any. */
function errorDetail(body: string): string {
  const xml = (tag: string) => /<(\w+)>([^<]{0,200})<\/\1>/.exec(body.slice(body.indexOf(`<${tag}>`)))?.[2];
  if (body.includes('<Code>'))
    return [xml('Code'), body.includes('<Message>') ? xml('Message') : undefined].filter(Boolean).join(': ');
  try {
    const j = JSON.parse(body) as { error?: { message?: unknown } | string };
    const msg = typeof j.error === 'string' ? j.error : j.error?.message;
    if (typeof msg === 'string') return msg.slice(0, 200);
  } catch {
    // not JSON
  }
  return '';
}

function statusHint(status: number, _source: ArtifactSource, env: Env): string {
  if (status === 401 || status === 403) {
    return env.HTTP_AUTHORIZATION
      ? "check the artifactSecret's HTTP_AUTHORIZATION value"
      : 'the server wants credentials: set spec.artifactSecret to a Secret with HTTP_AUTHORIZATION (a full Authorization header value)';
  }
  if (status === 404) return 'check spec.artifact';
  if (status === 429 || status >= 500) return 'the server is failing or throttling; the pod retries when it restarts';
  return 'the server refused the request: check spec.artifact';
}

function statusError(status: number, body: string, source: ArtifactSource, env: Env): FetchError {
  const detail = errorDetail(body);
  const text = http.STATUS_CODES[status] ?? 'Unknown status';
  return new FetchError(
    `${status} ${text} fetching ${redactUri(source.uri)}${detail ? ` (${detail})` : ''}: ${statusHint(status, source, env)}`,
    status === 429 || status >= 500,
  );
}

async function downloadOnce(
  req: DownloadRequest,
  file: string,
  ctx: DownloadContext,
  attempt: number,
): Promise<DownloadResult> {
  const { source, env, log } = ctx;
  const origin = req.url.origin;
  let hop: Hop = { url: req.url, path: req.path ?? req.url.pathname + req.url.search };
  for (let redirects = 0; ; redirects++) {
    const sameOrigin = hop.url.origin === origin;
    const headers = {
      'accept-encoding': 'identity',
      'user-agent': 'ml-operator-fetcher',
      ...req.headers,
      ...(sameOrigin ? req.credentials : {}),
    };
    const res = await request(hop, headers, ctx.timeoutMs);
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
      res.resume();
      if (redirects >= maxRedirects)
        throw new FetchError(
          `too many redirects (more than ${maxRedirects}) fetching ${redactUri(source.uri)}: check spec.artifact`,
        );
      let next: URL;
      try {
        next = new URL(res.headers.location, hop.url);
      } catch {
        throw new FetchError(`invalid redirect location fetching ${redactUri(source.uri)}`);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:')
        throw new FetchError(`redirect to unsupported scheme ${next.protocol} fetching ${redactUri(source.uri)}`);
      // Whoever asked for https asked for a tamper-proof transfer; an upgrade to https is fine.
      if (hop.url.protocol === 'https:' && next.protocol === 'http:') {
        throw new FetchError(
          `refused a redirect from https to http (${redactUri(next.href)}) fetching ${redactUri(source.uri)}: a downgrade would let anyone on the path read or change the artifact; serve it over https all the way`,
        );
      }
      log('info', 'redirected', {
        uri: redactUri(source.uri),
        status,
        to: redactUri(next.href),
        credentials: next.origin === origin && !!req.credentials,
      });
      hop = { url: next, path: next.pathname + next.search };
      continue;
    }
    if (status < 200 || status > 299) throw statusError(status, await readSnippet(res), source, env);
    const header = res.headers['content-length'];
    const expected = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
    return saveBody(res, expected, file, ctx, attempt);
  }
}

/** The first request for an http(s) source. */
export function downloadRequest(
  source: Extract<ArtifactSource, { scheme: 'http' | 'https' }>,
  env: Env,
): DownloadRequest {
  return {
    url: source.url,
    credentials: env.HTTP_AUTHORIZATION ? { authorization: env.HTTP_AUTHORIZATION } : undefined,
  };
}

/**
 * Copies a pvc:// file into `download` (returned as `file`) or a directory into `content`, within
 * the limits; `singleFile` refuses a directory (a digest can only be checked on one file).
 */
export async function copyFromClaim(
  source: Extract<ArtifactSource, { scheme: 'pvc' }>,
  env: Env,
  download: string,
  content: string,
  log: Log,
  { singleFile, limits }: { singleFile: boolean; limits: Limits },
): Promise<{ file?: string; result: DownloadResult | null }> {
  const root = resolve(env.ARTIFACT_SOURCE_ROOT || defaultArtifactSourceRoot, source.claim);
  const from = join(root, source.path);
  let realRoot: string;
  try {
    realRoot = await realpath(root);
  } catch {
    throw new FetchError(
      `claim ${source.claim} is not mounted at ${root}: the pod must mount the claim (pvc://<claim>/<path>) read-only there`,
    );
  }
  let real: string;
  try {
    real = await realpath(from);
  } catch {
    throw new FetchError(
      `${source.path || '/'} not found in claim ${source.claim} (fetching ${source.uri}): check spec.artifact's path inside the claim`,
    );
  }
  if (real !== realRoot && !real.startsWith(realRoot + sep))
    throw new FetchError(
      `${source.uri} resolves outside the claim (a symbolic link to ${real}): point spec.artifact at a path inside the claim`,
    );
  const st = await stat(real);
  if (st.isDirectory()) {
    if (singleFile)
      throw new FetchError(
        `--sha256 verifies one file, but ${source.uri} is a directory: point spec.artifact at one file in the claim (an archive) or remove spec.artifactSha256`,
      );
    // The claim is mounted read-only: what it holds now is what will be copied.
    const tree = await measureTree(real);
    if (limits.maxBytes !== undefined && tree.bytes > limits.maxBytes)
      throw tooLarge(
        source.uri,
        limits.maxBytes,
        `it holds ${tree.bytes} bytes in ${tree.entries} entries`,
        'nothing was copied',
      );
    if (tree.entries > limits.maxEntries)
      throw new FetchError(
        `${source.uri} holds ${tree.entries} entries (files, directories and links), more than ${limits.maxEntries}; nothing was copied: pack the model into fewer files`,
      );
    log('info', 'copying', { uri: source.uri, kind: 'directory', bytes: tree.bytes, entries: tree.entries });
    // verbatimSymlinks: links are copied as they are (and checked later), not rewritten to source paths.
    await cp(real, content, { recursive: true, verbatimSymlinks: true, force: true, errorOnExist: false });
    return { result: null };
  }
  if (!st.isFile()) throw new FetchError(`${source.uri} is neither a file nor a directory`);
  log('info', 'copying', { uri: source.uri, kind: 'file', bytes: st.size });
  const file = join(download, safeBasename(source.path));
  const counter = digestingStream(
    limits.maxBytes === undefined ? undefined : { maxBytes: limits.maxBytes, uri: source.uri },
  );
  await pipeline(createReadStream(real), counter.stream, createWriteStream(file));
  return { file, result: counter.result() };
}
