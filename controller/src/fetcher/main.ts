// The artifact fetcher: the init container of every model server pod.
//   node /app/dist/fetcher/main.js <artifact-uri> <target-dir>
// Fetches a model artifact (http(s)://, s3://, gs://, pvc://) into the model volume, unpacking
// .tar.gz/.tgz/.zip archives, so that the server finds it at /opt/ml/model.
//
// Safe to run again and from several replicas at once on one shared volume: everything is fetched
// into <target>/.fetch-<random>/, moved into place with rename(2), and the marker
// <target>/.ml-operator-artifact (URI, sha256, size) is written last; a run that finds a marker for
// the same URI does nothing. Artifacts are streamed to disk, never held in memory.
//
// Logs: one JSON line per step on stderr; credentials are never logged. Exit codes: 0 done (or
// already there), 1 failure, 2 bad usage.
import { execFile } from 'node:child_process';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, cp, lstat, mkdir, mkdtemp, readFile, readdir, readlink, realpath, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';

export const markerName = '.ml-operator-artifact';
export const tempPrefix = '.fetch-';
export const defaultArtifactSourceRoot = '/mnt/artifact-source';
export const defaultRetryDelaysMs = [1000, 2000];
export const maxRedirects = 5;
const staleTempMs = 60 * 60 * 1000;
const unsignedPayload = 'UNSIGNED-PAYLOAD';

// ---------------------------------------------------------------------------------------------
// Errors

/** Bad arguments: exit code 2. */
export class UsageError extends Error {}

/** A failed fetch: exit code 1. `retryable` for network errors, 5xx and 429. */
export class FetchError extends Error {
  retryable: boolean;
  constructor(message: string, retryable = false) {
    super(message);
    this.retryable = retryable;
  }
}

// ---------------------------------------------------------------------------------------------
// URIs

export type ArtifactSource =
  | { scheme: 'http' | 'https'; uri: string; url: URL; path: string }
  | { scheme: 's3'; uri: string; bucket: string; key: string; path: string }
  | { scheme: 'gs'; uri: string; bucket: string; object: string; path: string }
  | { scheme: 'pvc'; uri: string; claim: string; path: string };

const bucketPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{1,220}[A-Za-z0-9]$/;
const claimPattern = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/**
 * Parses an artifact URI. `path` is the part whose suffix decides the archive kind and whose last
 * segment names a plain file in the target. Throws UsageError on anything unsupported.
 */
export function parseArtifactUri(uri: string): ArtifactSource {
  const supported = 'supported: http://, https://, s3://<bucket>/<key>, gs://<bucket>/<object>, pvc://<claim>/<path>';
  if (typeof uri !== 'string' || uri.trim() === '') throw new UsageError(`empty artifact URI (${supported})`);
  if (/[\0\r\n]/.test(uri)) throw new UsageError('artifact URI contains control characters');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new UsageError(`invalid URL ${redactUri(uri)}`);
    }
    if (!url.hostname) throw new UsageError(`URL ${redactUri(uri)} has no host`);
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      path = url.pathname;
    }
    return { scheme, uri, url, path };
  }
  if (scheme === 's3' || scheme === 'gs') {
    const m = /^[a-z0-9]+:\/\/([^/]*)\/?([\s\S]*)$/i.exec(uri)!;
    const [, bucket, key] = m;
    if (!bucketPattern.test(bucket)) throw new UsageError(`invalid bucket name ${JSON.stringify(bucket)} in ${uri} (expected ${scheme}://<bucket>/<${scheme === 's3' ? 'key' : 'object'}>)`);
    if (!key) throw new UsageError(`${uri} names a bucket but no object (expected ${scheme}://<bucket>/<${scheme === 's3' ? 'key' : 'object'}>)`);
    if (key.endsWith('/')) throw new UsageError(`${uri} names a prefix, not an object: point spec.artifact at one object (an archive such as model.tar.gz)`);
    return scheme === 's3' ? { scheme, uri, bucket, key, path: key } : { scheme, uri, bucket, object: key, path: key };
  }
  if (scheme === 'pvc') {
    const m = /^pvc:\/\/([^/]*)\/([\s\S]*)$/i.exec(uri);
    if (!m) throw new UsageError(`${uri}: expected pvc://<claim>/<path> (the path may be empty for the whole claim)`);
    const [, claim, rest] = m;
    if (!claimPattern.test(claim) || claim.length > 253) throw new UsageError(`invalid claim name ${JSON.stringify(claim)} in ${uri}`);
    const segments = rest.split('/').filter((s) => s !== '' && s !== '.');
    if (segments.includes('..')) throw new UsageError(`${uri}: the path must stay inside the claim (no '..')`);
    return { scheme: 'pvc', uri, claim, path: segments.join('/') };
  }
  throw new UsageError(`unsupported artifact URI ${redactUri(uri)} (${supported})`);
}

/** The URI without credentials: no user info, query values replaced (presigned URLs carry signatures). */
export function redactUri(uri: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*@)?([^?#]*)(\?[^#]*)?(#.*)?$/is.exec(uri);
  if (!m) return uri;
  const [, scheme, userinfo, rest, query] = m;
  const q = query
    ? '?' +
      query
        .slice(1)
        .split('&')
        .map((p) => (p.includes('=') ? `${p.slice(0, p.indexOf('='))}=REDACTED` : p))
        .join('&')
    : '';
  return `${scheme}${userinfo ? 'REDACTED@' : ''}${rest}${q}`;
}

export type ArchiveKind = 'tar.gz' | 'zip';

/** The archive kind of a path by its suffix (case-insensitive), or null for a plain file. */
export function archiveKind(path: string): ArchiveKind | null {
  const p = path.toLowerCase();
  if (p.endsWith('.tar.gz') || p.endsWith('.tgz')) return 'tar.gz';
  if (p.endsWith('.zip')) return 'zip';
  return null;
}

/**
 * Checks an archive listing (one member name per element, as `tar -tzf` or `unzip -Z1` print it):
 * returns the non-empty names, or throws when a member would land outside the target (absolute
 * path, a `..` segment, a drive letter) or would overwrite the fetcher's own files.
 */
export function safeEntries(list: readonly string[]): string[] {
  const entries = list.map((e) => e.replace(/\r$/, '')).filter((e) => e !== '');
  const bad = entries.filter((e) => {
    if (e.startsWith('/') || e.startsWith('\\') || /^[A-Za-z]:/.test(e) || e.includes('\0')) return true;
    const segments = e.split(/[\\/]+/).filter((s) => s !== '' && s !== '.');
    if (segments.includes('..')) return true;
    const top = segments[0] ?? '';
    return top === markerName || top.startsWith(tempPrefix);
  });
  if (bad.length) {
    const shown = bad.slice(0, 5).map((e) => JSON.stringify(e)).join(', ');
    throw new FetchError(`unsafe archive: ${bad.length} member(s) would be written outside the target or over the fetcher's files (${shown}${bad.length > 5 ? ', ...' : ''}); nothing was extracted: rebuild the archive with relative paths`);
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------
// AWS Signature Version 4

/** AWS URI encoding: everything but A-Z a-z 0-9 - _ . ~ is percent-encoded ('/' kept unless encodeSlash). */
export function awsUriEncode(value: string, encodeSlash = true): string {
  const encoded = encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return encodeSlash ? encoded : encoded.replace(/%2F/g, '/');
}

export interface S3SignInput {
  method?: string;
  /** Host header value (with the port when not the scheme's default). */
  host: string;
  /** The path exactly as sent, already URI-encoded (see awsUriEncode); S3 paths are not normalised. */
  path: string;
  /** Raw query string without '?'. */
  query?: string;
  /** Extra headers to sign and send, such as range. */
  headers?: Record<string, string>;
  region: string;
  service?: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Defaults to UNSIGNED-PAYLOAD. */
  payloadHash?: string;
  /** The request time: a Date or an ISO basic timestamp such as 20130524T000000Z. */
  date: Date | string;
}

const sha256Hex = (data: string) => createHash('sha256').update(data, 'utf8').digest('hex');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

/** Signs a request with AWS SigV4; returns every header to send (lowercase names), authorization included. */
export function signS3Request(input: S3SignInput): Record<string, string> {
  const method = (input.method ?? 'GET').toUpperCase();
  const service = input.service ?? 's3';
  const payloadHash = input.payloadHash ?? unsignedPayload;
  const amzDate = typeof input.date === 'string' ? input.date : input.date.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
  if (!/^\d{8}T\d{6}Z$/.test(amzDate)) throw new Error(`invalid SigV4 date ${amzDate}`);
  const dateStamp = amzDate.slice(0, 8);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v;
  headers.host = input.host;
  headers['x-amz-date'] = amzDate;
  headers['x-amz-content-sha256'] = payloadHash;
  if (input.sessionToken) headers['x-amz-security-token'] = input.sessionToken;
  delete headers.authorization;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((n) => `${n}:${headers[n].trim().replace(/\s+/g, ' ')}\n`).join('');
  const signedHeaders = names.join(';');
  const canonicalQuery = (input.query ?? '')
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const i = p.indexOf('=');
      const [k, v] = i < 0 ? [p, ''] : [p.slice(0, i), p.slice(i + 1)];
      const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
      return [awsUriEncode(dec(k)), awsUriEncode(dec(v))];
    })
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalRequest = [method, input.path || '/', canonicalQuery, canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${dateStamp}/${input.region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const kDate = hmac(`AWS4${input.secretAccessKey}`, dateStamp);
  const kSigning = hmac(hmac(hmac(kDate, input.region), service), 'aws4_request');
  const signature = createHmac('sha256', kSigning).update(stringToSign, 'utf8').digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${input.accessKeyId}/${scope},SignedHeaders=${signedHeaders},Signature=${signature}`;
  return headers;
}

// ---------------------------------------------------------------------------------------------
// Logging

export type Env = Record<string, string | undefined>;

export interface Options {
  /** Delays between the 3 attempts (default 1s, 2s). */
  retryDelaysMs?: number[];
  /** Idle socket timeout (default 60s). */
  timeoutMs?: number;
  /** Where log lines go (default stderr). */
  log?: (line: string) => void;
}

const secretEnvNames = ['HTTP_AUTHORIZATION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'GOOGLE_OAUTH_ACCESS_TOKEN'];

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

function makeLog(env: Env, out: (line: string) => void): Log {
  // Last line of defence: any credential value that somehow reached a log line is masked.
  const secrets = secretEnvNames
    .map((n) => env[n])
    .filter((v): v is string => typeof v === 'string' && v.length >= 4)
    .flatMap((v) => [v, JSON.stringify(v).slice(1, -1)]);
  return (level, msg, fields = {}) => {
    let line = JSON.stringify({ time: new Date().toISOString(), level, component: 'fetcher', msg, ...fields });
    for (const s of secrets) line = line.split(s).join('REDACTED');
    out(line);
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP download with redirects and retries

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

export interface DownloadResult {
  bytes: number;
  sha256: string;
}

interface DownloadContext {
  source: ArtifactSource;
  env: Env;
  log: Log;
  timeoutMs: number;
  retryDelaysMs: number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Downloads to `file` with up to 3 attempts: retries network errors, 5xx and 429; other failures are final. */
/** A pass-through stream that counts and hashes what flows through it. */
function digestingStream(): { stream: Transform; result(): DownloadResult } {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  return { stream, result: () => ({ bytes, sha256: hash.digest('hex') }) };
}

export async function downloadWithRetries(req: DownloadRequest, file: string, ctx: DownloadContext): Promise<DownloadResult> {
  const attempts = ctx.retryDelaysMs.length + 1;
  for (let attempt = 1; ; attempt++) {
    try {
      return await downloadOnce(req, file, ctx, attempt);
    } catch (e) {
      const err = e instanceof FetchError ? e : networkError(e, ctx.source);
      if (!err.retryable || attempt >= attempts) {
        if (err.retryable) err.message += ` (after ${attempts} attempts)`;
        throw err;
      }
      const delay = ctx.retryDelaysMs[attempt - 1];
      ctx.log('warn', 'retrying', { uri: redactUri(ctx.source.uri), attempt, of: attempts, delayMs: delay, error: err.message });
      await sleep(delay);
    }
  }
}

const localErrors = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO']);

function networkError(e: unknown, source: ArtifactSource): FetchError {
  const err = e as NodeJS.ErrnoException;
  const detail = [err?.code, err?.message].filter(Boolean).join(' ');
  if (err?.code && localErrors.has(err.code) && err.syscall !== 'connect') {
    return new FetchError(`writing ${redactUri(source.uri)} to the model volume failed (${detail}): check the variant's size and that the volume is writable by the fetcher`);
  }
  return new FetchError(`network error fetching ${redactUri(source.uri)} (${detail || String(e)}): check the host name, the port and the pod's network access (egress policy, proxy)`, true);
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
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no data for ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
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

/** The provider's error code and message from an S3 XML or GCS JSON error body, if any. */
function errorDetail(body: string): string {
  const xml = (tag: string) => /<(\w+)>([^<]{0,200})<\/\1>/.exec(body.slice(body.indexOf(`<${tag}>`)))?.[2];
  if (body.includes('<Code>')) return [xml('Code'), body.includes('<Message>') ? xml('Message') : undefined].filter(Boolean).join(': ');
  try {
    const j = JSON.parse(body) as { error?: { message?: unknown } | string };
    const msg = typeof j.error === 'string' ? j.error : j.error?.message;
    if (typeof msg === 'string') return msg.slice(0, 200);
  } catch {
    // not JSON
  }
  return '';
}

function statusHint(status: number, source: ArtifactSource, env: Env): string {
  const s = source.scheme;
  if (status === 401 || status === 403) {
    if (s === 's3') return env.AWS_ACCESS_KEY_ID ? "check the artifactSecret's AWS_* keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION) and the bucket policy" : 'the request was anonymous: set spec.artifactSecret to a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY';
    if (s === 'gs') return env.GOOGLE_OAUTH_ACCESS_TOKEN ? "check the artifactSecret's GOOGLE_OAUTH_ACCESS_TOKEN (access tokens expire after about an hour) and the bucket's IAM permissions" : 'the request was anonymous: set spec.artifactSecret to a Secret with GOOGLE_OAUTH_ACCESS_TOKEN';
    return env.HTTP_AUTHORIZATION ? "check the artifactSecret's HTTP_AUTHORIZATION value" : 'the server wants credentials: set spec.artifactSecret to a Secret with HTTP_AUTHORIZATION (a full Authorization header value)';
  }
  if (status === 404) return s === 's3' ? 'check spec.artifact (bucket and key) and AWS_REGION/AWS_ENDPOINT_URL' : s === 'gs' ? 'check spec.artifact (bucket and object)' : 'check spec.artifact';
  if (status === 400 && s === 's3') return 'check that AWS_REGION is the bucket\'s region and the artifactSecret\'s AWS_* keys are well-formed';
  if (status === 301 && s === 's3') return 'the bucket is in another region: set AWS_REGION in the artifactSecret to the bucket\'s region';
  if (status === 429 || status >= 500) return 'the server is failing or throttling; the pod retries when it restarts';
  return 'the server refused the request: check spec.artifact';
}

function statusError(status: number, body: string, source: ArtifactSource, env: Env): FetchError {
  const detail = errorDetail(body);
  const text = http.STATUS_CODES[status] ?? 'Unknown status';
  return new FetchError(`${status} ${text} fetching ${redactUri(source.uri)}${detail ? ` (${detail})` : ''}: ${statusHint(status, source, env)}`, status === 429 || status >= 500);
}

async function downloadOnce(req: DownloadRequest, file: string, ctx: DownloadContext, attempt: number): Promise<DownloadResult> {
  const { source, env, log } = ctx;
  const origin = req.url.origin;
  let hop: Hop = { url: req.url, path: req.path ?? req.url.pathname + req.url.search };
  for (let redirects = 0; ; redirects++) {
    const sameOrigin = hop.url.origin === origin;
    const headers = { 'accept-encoding': 'identity', 'user-agent': 'ml-operator-fetcher', ...req.headers, ...(sameOrigin ? req.credentials : {}) };
    const res = await request(hop, headers, ctx.timeoutMs);
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
      res.resume();
      if (redirects >= maxRedirects) throw new FetchError(`too many redirects (more than ${maxRedirects}) fetching ${redactUri(source.uri)}: check spec.artifact`);
      let next: URL;
      try {
        next = new URL(res.headers.location, hop.url);
      } catch {
        throw new FetchError(`invalid redirect location fetching ${redactUri(source.uri)}`);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new FetchError(`redirect to unsupported scheme ${next.protocol} fetching ${redactUri(source.uri)}`);
      log('info', 'redirected', { uri: redactUri(source.uri), status, to: redactUri(next.href), credentials: next.origin === origin && !!req.credentials });
      hop = { url: next, path: next.pathname + next.search };
      continue;
    }
    if (status < 200 || status > 299) throw statusError(status, await readSnippet(res), source, env);
    const header = res.headers['content-length'];
    const expected = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
    log('info', 'fetching', { uri: redactUri(source.uri), attempt, bytes: expected ?? null });
    const counter = digestingStream();
    await pipeline(res, counter.stream, createWriteStream(file));
    const result = counter.result();
    if (expected !== undefined && result.bytes !== expected) {
      throw new FetchError(`network error fetching ${redactUri(source.uri)}: got ${result.bytes} of ${expected} bytes`, true);
    }
    return result;
  }
}

/** The first request for an http(s), s3 or gs source. */
export function downloadRequest(source: ArtifactSource, env: Env, now: Date = new Date()): DownloadRequest {
  if (source.scheme === 'http' || source.scheme === 'https') {
    return { url: source.url, credentials: env.HTTP_AUTHORIZATION ? { authorization: env.HTTP_AUTHORIZATION } : undefined };
  }
  if (source.scheme === 's3') {
    const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';
    const encodedKey = awsUriEncode(source.key, false);
    let url: URL;
    let path: string;
    if (env.AWS_ENDPOINT_URL) {
      try {
        url = new URL(env.AWS_ENDPOINT_URL);
      } catch {
        throw new FetchError(`invalid AWS_ENDPOINT_URL ${redactUri(env.AWS_ENDPOINT_URL)}: expected a URL such as https://minio.example:9000`);
      }
      path = `${url.pathname.replace(/\/+$/, '')}/${awsUriEncode(source.bucket)}/${encodedKey}`;
    } else if (source.bucket.includes('.')) {
      // Dotted bucket names break virtual-hosted TLS (the wildcard certificate covers one label).
      url = new URL(`https://s3.${region}.amazonaws.com`);
      path = `/${source.bucket}/${encodedKey}`;
    } else {
      url = new URL(`https://${source.bucket}.s3.${region}.amazonaws.com`);
      path = `/${encodedKey}`;
    }
    const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_SESSION_TOKEN: sessionToken } = env;
    if (!accessKeyId && !secretAccessKey) return { url, path };
    if (!accessKeyId || !secretAccessKey) throw new FetchError(`incomplete AWS credentials: ${accessKeyId ? 'AWS_SECRET_ACCESS_KEY' : 'AWS_ACCESS_KEY_ID'} is missing: the artifactSecret needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
    const signed = signS3Request({ host: url.host, path, region, accessKeyId, secretAccessKey, sessionToken: sessionToken || undefined, date: now });
    const { authorization, 'x-amz-security-token': token, host: _host, ...plain } = signed;
    return { url, path, headers: plain, credentials: { authorization, ...(token ? { 'x-amz-security-token': token } : {}) } };
  }
  if (source.scheme === 'gs') {
    let url: URL;
    try {
      url = new URL(env.GCS_ENDPOINT_URL || 'https://storage.googleapis.com');
    } catch {
      throw new FetchError(`invalid GCS_ENDPOINT_URL ${redactUri(env.GCS_ENDPOINT_URL ?? '')}`);
    }
    const path = `${url.pathname.replace(/\/+$/, '')}/storage/v1/b/${encodeURIComponent(source.bucket)}/o/${encodeURIComponent(source.object)}?alt=media`;
    const token = env.GOOGLE_OAUTH_ACCESS_TOKEN;
    return { url, path, credentials: token ? { authorization: `Bearer ${token}` } : undefined };
  }
  throw new Error(`no download request for ${source.scheme}`);
}

// ---------------------------------------------------------------------------------------------
// pvc:// copies

async function copyFromClaim(source: Extract<ArtifactSource, { scheme: 'pvc' }>, env: Env, download: string, content: string, log: Log): Promise<{ file?: string; result: DownloadResult | null }> {
  const root = resolve(env.ARTIFACT_SOURCE_ROOT || defaultArtifactSourceRoot, source.claim);
  const from = join(root, source.path);
  let realRoot: string;
  try {
    realRoot = await realpath(root);
  } catch {
    throw new FetchError(`claim ${source.claim} is not mounted at ${root}: the pod must mount the claim (pvc://<claim>/<path>) read-only there`);
  }
  let real: string;
  try {
    real = await realpath(from);
  } catch {
    throw new FetchError(`${source.path || '/'} not found in claim ${source.claim} (fetching ${source.uri}): check spec.artifact's path inside the claim`);
  }
  if (real !== realRoot && !real.startsWith(realRoot + sep)) throw new FetchError(`${source.uri} resolves outside the claim (a symbolic link to ${real}): point spec.artifact at a path inside the claim`);
  const st = await stat(real);
  if (st.isDirectory()) {
    log('info', 'copying', { uri: source.uri, kind: 'directory' });
    // verbatimSymlinks: links are copied as they are (and checked later), not rewritten to source paths.
    await cp(real, content, { recursive: true, verbatimSymlinks: true, force: true, errorOnExist: false });
    return { result: null };
  }
  if (!st.isFile()) throw new FetchError(`${source.uri} is neither a file nor a directory`);
  log('info', 'copying', { uri: source.uri, kind: 'file', bytes: st.size });
  const file = join(download, safeBasename(source.path));
  const counter = digestingStream();
  await pipeline(createReadStream(real), counter.stream, createWriteStream(file));
  return { file, result: counter.result() };
}

// ---------------------------------------------------------------------------------------------
// Archives

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new FetchError(`${cmd} is not installed in the fetcher image: it is needed to unpack this archive`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const lastLines = (text: string) => text.trim().split('\n').slice(-3).join(' | ').slice(0, 500);

/** Lists the archive, refuses unsafe members, then extracts into `into`. Returns the member count. */
export async function unpack(kind: ArchiveKind, file: string, into: string, uri: string): Promise<number> {
  const list = kind === 'tar.gz' ? await run('tar', ['-tzf', file]) : await run('unzip', ['-Z1', file]);
  if (list.code !== 0) {
    if (kind === 'zip' && /empty/i.test(list.stdout + list.stderr)) throw new FetchError(`archive ${redactUri(uri)} is empty: check spec.artifact`);
    throw new FetchError(`${redactUri(uri)} is not a valid ${kind === 'zip' ? 'zip' : 'gzip-compressed tar'} archive (${lastLines(list.stderr || list.stdout)}): check spec.artifact or rename it so that its suffix matches its format`);
  }
  const entries = safeEntries(list.stdout.split('\n'));
  if (!entries.length) throw new FetchError(`archive ${redactUri(uri)} is empty: check spec.artifact`);
  await mkdir(into, { recursive: true });
  const x = kind === 'tar.gz' ? await run('tar', ['-xzf', file, '-C', into, '--no-same-owner']) : await run('unzip', ['-qq', '-o', file, '-d', into]);
  // unzip exits 1 on warnings after extracting everything.
  if (x.code !== 0 && !(kind === 'zip' && x.code === 1)) throw new FetchError(`unpacking ${redactUri(uri)} failed (${lastLines(x.stderr || x.stdout)}): check the archive and the free space on the model volume (spec size)`);
  return entries.length;
}

/**
 * Walks the fetched tree: refuses symbolic links that point outside it and special files, and makes
 * everything readable by the server (which may run as another user): directories 0755, files 0644
 * (0755 when executable).
 */
export async function checkTree(root: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      const rel = relative(root, p);
      if (entry.isSymbolicLink()) {
        const target = await readlink(p);
        const resolved = resolve(dirname(p), target);
        if (isAbsolute(target) || (resolved !== root && !resolved.startsWith(root + sep))) {
          throw new FetchError(`unsafe artifact: symbolic link ${rel} points outside the artifact (${target}): use relative links inside it`);
        }
      } else if (entry.isDirectory()) {
        await chmod(p, 0o755);
        await walk(p);
      } else if (entry.isFile()) {
        const st = await lstat(p);
        await chmod(p, st.mode & 0o111 ? 0o755 : 0o644);
        files++;
        bytes += st.size;
      } else {
        throw new FetchError(`unsupported entry ${rel} in the artifact (device, socket or pipe)`);
      }
    }
  };
  await walk(root);
  return { files, bytes };
}

// ---------------------------------------------------------------------------------------------
// Installing into the target

const isReserved = (name: string) => name === markerName || name.startsWith(tempPrefix) || name === 'lost+found';

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

async function moveAside(path: string, trash: string): Promise<void> {
  try {
    await rename(path, join(trash, randomUUID()));
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
}

/**
 * Moves the tree `src` into `dest`, each entry with one rename(2): files replace files atomically,
 * directories are merged, entries of `dest` that `src` lacks are removed (at the top level, the
 * fetcher's own files are kept). Safe when another replica installs the same tree at once.
 */
export async function install(src: string, dest: string, trash: string, top = true): Promise<void> {
  const names = await readdir(src);
  for (const name of names) {
    const s = join(src, name);
    const d = join(dest, name);
    for (let tries = 0; ; tries++) {
      const [ss, ds] = await Promise.all([lstat(s), lstat(d).catch((e) => (errno(e) === 'ENOENT' ? null : Promise.reject(e)))]);
      if (ss.isDirectory() && ds?.isDirectory()) {
        await install(s, d, trash, false);
        break;
      }
      if (ds && (ds.isDirectory() || ss.isDirectory())) await moveAside(d, trash);
      try {
        await rename(s, d);
        break;
      } catch (e) {
        if (tries >= 5 || !['EEXIST', 'ENOTEMPTY', 'EISDIR', 'ENOTDIR'].includes(errno(e) ?? '')) throw e;
      }
    }
  }
  const keep = new Set(names);
  for (const name of await readdir(dest)) {
    if (keep.has(name) || (top && isReserved(name))) continue;
    await moveAside(join(dest, name), trash);
  }
}

/** Removes a tree even when it holds directories without write permission (as a non-root user). */
async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch {
    const open = async (p: string): Promise<void> => {
      const st = await lstat(p).catch(() => null);
      if (!st?.isDirectory()) return;
      await chmod(p, 0o700).catch(() => {});
      for (const n of await readdir(p).catch(() => [] as string[])) await open(join(p, n));
    };
    await open(path);
    await rm(path, { recursive: true, force: true });
  }
}

/** Removes `.fetch-*` directories left by runs that died more than `maxAgeMs` ago. */
export async function removeStaleTemps(target: string, log: Log, maxAgeMs = staleTempMs, now = Date.now()): Promise<void> {
  for (const name of await readdir(target)) {
    if (!name.startsWith(tempPrefix)) continue;
    const p = join(target, name);
    const st = await lstat(p).catch(() => null);
    if (!st || now - st.mtimeMs <= maxAgeMs) continue;
    await removeTree(p).then(
      () => log('info', 'removed stale temporary directory', { path: p }),
      (e) => log('warn', 'could not remove stale temporary directory', { path: p, error: String((e as Error).message) }),
    );
  }
}

export interface Marker {
  uri: string;
  sha256: string | null;
  bytes: number;
  kind: ArchiveKind | 'file' | 'directory';
  fetchedAt: string;
}

export async function readMarker(target: string): Promise<Marker | null> {
  try {
    const m = JSON.parse(await readFile(join(target, markerName), 'utf8')) as Marker;
    return typeof m?.uri === 'string' ? m : null;
  } catch {
    return null;
  }
}

function safeBasename(path: string): string {
  const name = basename(path.replace(/\/+$/, ''));
  return name && name !== '.' && name !== '..' && !isReserved(name) ? name : 'artifact';
}

// ---------------------------------------------------------------------------------------------
// main

/** Fetches `uri` into `target`; resolves when done, throws FetchError (or UsageError) otherwise. */
export async function fetchArtifact(uri: string, target: string, env: Env, options: Options = {}): Promise<'fetched' | 'skipped'> {
  const log = makeLog(env, options.log ?? ((line) => process.stderr.write(`${line}\n`)));
  const source = parseArtifactUri(uri);
  const shown = redactUri(uri);
  await mkdir(target, { recursive: true });
  await removeStaleTemps(target, log);
  const before = await readMarker(target);
  if (before?.uri === uri) {
    log('info', 'already fetched', { uri: shown, sha256: before.sha256, fetchedAt: before.fetchedAt });
    return 'skipped';
  }
  const tmp = await mkdtemp(join(target, tempPrefix));
  // Keeps the temporary directory fresh so that other replicas do not take it for a stale one.
  const heartbeat = setInterval(() => {
    const t = new Date();
    utimes(tmp, t, t).catch(() => {});
  }, 60_000);
  heartbeat.unref();
  try {
    const download = join(tmp, 'download');
    const content = join(tmp, 'content');
    const trash = join(tmp, 'trash');
    await Promise.all([mkdir(download), mkdir(trash)]);
    const kind = archiveKind(source.path);
    let file: string | undefined;
    let result: DownloadResult | null;
    log('info', 'start', { uri: shown, target, kind: kind ?? 'file' });
    if (source.scheme === 'pvc') {
      ({ file, result } = await copyFromClaim(source, env, download, content, log));
    } else {
      file = join(download, safeBasename(source.path));
      result = await downloadWithRetries(downloadRequest(source, env), file, {
        source,
        env,
        log,
        timeoutMs: options.timeoutMs ?? 60_000,
        retryDelaysMs: options.retryDelaysMs ?? defaultRetryDelaysMs,
      });
    }
    if (result) log('info', 'downloaded', { uri: shown, bytes: result.bytes, sha256: result.sha256 });
    let markerKind: Marker['kind'] = 'directory';
    if (file && kind) {
      const members = await unpack(kind, file, content, uri);
      await rm(file, { force: true });
      markerKind = kind;
      log('info', 'unpacked', { uri: shown, kind, members });
    } else if (file) {
      await mkdir(content);
      await rename(file, join(content, basename(file)));
      markerKind = 'file';
    }
    const tree = await checkTree(content);
    // Another replica may have finished meanwhile: then its files are in place already.
    const now = await readMarker(target);
    if (now?.uri === uri) {
      log('info', 'already fetched by another replica', { uri: shown });
      return 'skipped';
    }
    if (now) await unlink(join(target, markerName)).catch(() => {});
    await install(content, target, trash);
    const marker: Marker = { uri, sha256: result?.sha256 ?? null, bytes: result?.bytes ?? tree.bytes, kind: markerKind, fetchedAt: new Date().toISOString() };
    const markerTmp = join(tmp, 'marker');
    await writeFile(markerTmp, `${JSON.stringify(marker)}\n`, { mode: 0o644 });
    await rename(markerTmp, join(target, markerName));
    log('info', 'done', { uri: shown, target, files: tree.files, bytes: tree.bytes, sha256: marker.sha256 });
    return 'fetched';
  } finally {
    clearInterval(heartbeat);
    await removeTree(tmp).catch((e) => log('warn', 'could not remove temporary directory', { path: tmp, error: String((e as Error).message) }));
  }
}

export const usage = 'usage: fetcher <artifact-uri> <target-dir>\n  artifact-uri: http(s)://..., s3://<bucket>/<key>, gs://<bucket>/<object> or pvc://<claim>/<path>';

/** Entry point: `argv` without node and the script. Returns the exit code: 0 done, 1 failure, 2 bad usage. */
export async function main(argv: readonly string[], env: Env, options: Options = {}): Promise<number> {
  const out = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const log = makeLog(env, out);
  if (argv.length !== 2 || argv.some((a) => a === '-h' || a === '--help') || !argv[1]) {
    log('error', usage);
    return 2;
  }
  const [uri, target] = argv;
  try {
    await fetchArtifact(uri, resolve(target), env, { ...options, log: out });
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      log('error', `${e.message}\n${usage}`);
      return 2;
    }
    const message = e instanceof FetchError ? e.message : `fetching ${redactUri(uri)} failed: ${(e as Error)?.message ?? String(e)}`;
    log('error', message, { uri: redactUri(uri) });
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // As a container's first process, node gets no default SIGTERM handling: end at once so a pod
  // deleted mid-fetch does not wait out its grace period. A half-done fetch leaves only a .fetch-*
  // directory, which the next run removes.
  process.once('SIGTERM', () => process.exit(143));
  process.exitCode = await main(process.argv.slice(2), process.env);
}
