// The agent's settings: its command line (fixed for the pod's life) and its capture and shadow
// config (config.json from a mounted ConfigMap, re-read while it runs). Pure parsing, no I/O.
import { comparer, type CompareSpec } from '../compare/compare.ts';

export interface Flags {
  listen: { host: string; port: number };
  adminListen: { host: string; port: number };
  /** The model server in the pod, e.g. http://127.0.0.1:8081. */
  model: URL;
  modelReadyPath: string;
  configPath: string;
  /** How often the config file is read again. */
  configPollMs: number;
  /** The most captured bytes held in memory, waiting for the sink; past it records are dropped. */
  bufferBytes: number;
  /** How long SIGTERM waits for requests in flight. */
  drainTimeoutMs: number;
  /** How long SIGTERM then waits for the sink to take what was captured. */
  flushTimeoutMs: number;
}

export interface Identity {
  namespace: string;
  endpoint: string;
  variant: string;
  modelVersion: string;
  pod: string;
}

export type CaptureOption = 'Input' | 'Output';

export interface CaptureConfig {
  enabled: boolean;
  samplingPercent: number;
  captureOptions: CaptureOption[];
  /** s3://, gs://, azure://account/container/prefix or file:///dir (a pvc:// destination, mounted). */
  destination: string;
  textContentTypes: string[];
  maxRecordBytes: number;
  rotation: { maxBytes: number; maxSeconds: number };
}

/** A shadow the agent mirrors requests to, and compares the answers of with its model's. */
export interface ShadowConfig {
  /** The shadow variant. */
  name: string;
  /** Its Service, e.g. http://titanic-b-1a2b3c.ns1.svc:80 */
  url: string;
  /** The share of requests mirrored to it, 0 to 100. */
  percent: number;
  compare: Required<CompareSpec>;
  /** How long the shadow may take to answer a copy before it counts as a shadow error. */
  timeoutMs: number;
  /** Copies in flight to this shadow at most (per pod); a request past it is not mirrored, and counted. */
  maxInFlight: number;
  /** The model versions whose agents mirror to it (absent: every agent that reads the config). */
  sources?: string[];
  /**
   * Whose answer is the reference of the comparison: `own` (the default), the agent's model's, to which
   * a shadow is compared; or `copy`, the target's, when the target is the serving version and the
   * agent's model a new version under an agreement check.
   */
  reference: 'own' | 'copy';
}

export const shadowDefaults = { timeoutMs: 10_000, maxInFlight: 16 } as const;

export class UsageError extends Error {}

export const defaultCapture: CaptureConfig = {
  enabled: false,
  samplingPercent: 0,
  captureOptions: ['Input', 'Output'],
  destination: '',
  textContentTypes: ['application/json', 'text/csv'],
  maxRecordBytes: 1 << 20,
  rotation: { maxBytes: 16 << 20, maxSeconds: 60 },
};

export const usage = [
  'usage: agent --model=http://127.0.0.1:<port> [--listen=0.0.0.0:8080] [--admin-listen=0.0.0.0:9090]',
  '             [--model-ready-path=/] [--config=/etc/ml-operator/agent/config.json] [--config-poll-seconds=2]',
  '             [--buffer-bytes=16777216] [--drain-timeout-seconds=15] [--flush-timeout-seconds=5]',
].join('\n');

function hostPort(name: string, value: string): { host: string; port: number } {
  const m = /^(\[[0-9a-f:]+\]|[^:]*):(\d{1,5})$/i.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535)
    throw new UsageError(`${name} must be <address>:<port> such as 0.0.0.0:8080, not ${JSON.stringify(value)}`);
  return { host: (m[1] || '0.0.0.0').replace(/^\[|\]$/g, ''), port };
}

function positive(name: string, value: string, allowZero = false): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !Number.isFinite(n) || (allowZero ? n < 0 : n <= 0))
    throw new UsageError(`${name} must be a positive number, not ${JSON.stringify(value)}`);
  return n;
}

const known = [
  '--listen',
  '--admin-listen',
  '--model',
  '--model-ready-path',
  '--config',
  '--config-poll-seconds',
  '--buffer-bytes',
  '--drain-timeout-seconds',
  '--flush-timeout-seconds',
];

/** Reads `--name=value` flags; throws UsageError naming what is wrong. */
export function parseFlags(argv: readonly string[]): Flags {
  const given = new Map<string, string>();
  for (const arg of argv) {
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (!known.includes(name) || eq < 0)
      throw new UsageError(
        `unknown or incomplete flag ${JSON.stringify(arg)}; known flags: ${known.map((k) => `${k}=...`).join(' ')}`,
      );
    if (given.has(name)) throw new UsageError(`${name} is given twice`);
    given.set(name, arg.slice(eq + 1));
  }
  const modelText = given.get('--model');
  if (!modelText)
    throw new UsageError('--model is required: the model server in the pod, such as --model=http://127.0.0.1:8081');
  let model: URL;
  try {
    model = new URL(modelText);
  } catch {
    throw new UsageError(`--model must be a URL such as http://127.0.0.1:8081, not ${JSON.stringify(modelText)}`);
  }
  if (model.protocol !== 'http:')
    throw new UsageError(`--model must be an http:// URL (the model in the pod), not ${JSON.stringify(modelText)}`);
  const readyPath = given.get('--model-ready-path') ?? '/';
  if (!readyPath.startsWith('/'))
    throw new UsageError(`--model-ready-path must start with /, not ${JSON.stringify(readyPath)}`);
  return {
    listen: hostPort('--listen', given.get('--listen') ?? '0.0.0.0:8080'),
    adminListen: hostPort('--admin-listen', given.get('--admin-listen') ?? '0.0.0.0:9090'),
    model,
    modelReadyPath: readyPath,
    configPath: given.get('--config') ?? '/etc/ml-operator/agent/config.json',
    configPollMs: positive('--config-poll-seconds', given.get('--config-poll-seconds') ?? '2') * 1000,
    bufferBytes: Math.floor(positive('--buffer-bytes', given.get('--buffer-bytes') ?? String(16 << 20))),
    drainTimeoutMs: positive('--drain-timeout-seconds', given.get('--drain-timeout-seconds') ?? '15', true) * 1000,
    flushTimeoutMs: positive('--flush-timeout-seconds', given.get('--flush-timeout-seconds') ?? '5', true) * 1000,
  };
}

/** The pod's identity, from the environment the pod spec sets (downward API and literals). */
export function identityFrom(env: Record<string, string | undefined>): Identity {
  return {
    namespace: env.ML_NAMESPACE ?? '',
    endpoint: env.ML_ENDPOINT ?? '',
    variant: env.ML_VARIANT ?? '',
    modelVersion: env.ML_MODEL_VERSION ?? '',
    pod: env.ML_POD_NAME || env.HOSTNAME || 'agent',
  };
}

const destinationPattern = /^(s3|gs):\/\/[^/]+|^azure:\/\/[a-z0-9]{3,24}\/[a-z0-9-]{3,63}|^file:\/\/\//;

function wholeNumber(path: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new Error(`${path} must be a whole number >= ${min}, not ${JSON.stringify(value)}`);
  return value;
}

/** Parses config.json's text; throws an Error whose message names the field and what is expected. */
export function parseCaptureConfig(text: string): CaptureConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new Error('expected an object with a "capture" field');
  const c = (doc as { capture?: unknown }).capture;
  if (c === undefined) return { ...defaultCapture };
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new Error('capture must be an object');
  const raw = c as Record<string, unknown>;
  const out: CaptureConfig = { ...defaultCapture, rotation: { ...defaultCapture.rotation } };
  if (raw.enabled !== undefined) {
    if (typeof raw.enabled !== 'boolean')
      throw new Error(`capture.enabled must be true or false, not ${JSON.stringify(raw.enabled)}`);
    out.enabled = raw.enabled;
  }
  if (raw.samplingPercent !== undefined) {
    const p = raw.samplingPercent;
    if (typeof p !== 'number' || !(p >= 0 && p <= 100))
      throw new Error(`capture.samplingPercent must be a number from 0 to 100, not ${JSON.stringify(p)}`);
    out.samplingPercent = p;
  }
  if (raw.captureOptions !== undefined) {
    const o = raw.captureOptions;
    if (!Array.isArray(o) || o.length === 0 || o.some((x) => x !== 'Input' && x !== 'Output'))
      throw new Error(`capture.captureOptions must list "Input", "Output" or both, not ${JSON.stringify(o)}`);
    out.captureOptions = [...new Set(o as CaptureOption[])];
  }
  if (raw.destination !== undefined) {
    if (typeof raw.destination !== 'string') throw new Error('capture.destination must be a string');
    out.destination = raw.destination;
  }
  if (out.enabled && !destinationPattern.test(out.destination)) {
    throw new Error(
      `capture.destination ${JSON.stringify(out.destination)} is not one of s3://<bucket>/<prefix>, gs://<bucket>/<prefix>, azure://<account>/<container>/<prefix>, file:///<dir>`,
    );
  }
  if (raw.textContentTypes !== undefined) {
    const t = raw.textContentTypes;
    if (!Array.isArray(t) || t.some((x) => typeof x !== 'string'))
      throw new Error('capture.textContentTypes must be a list of media types');
    out.textContentTypes = (t as string[]).map((x) => x.trim().toLowerCase());
  }
  if (raw.maxRecordBytes !== undefined)
    out.maxRecordBytes = wholeNumber('capture.maxRecordBytes', raw.maxRecordBytes, 0);
  if (raw.rotation !== undefined) {
    if (typeof raw.rotation !== 'object' || raw.rotation === null)
      throw new Error('capture.rotation must be an object');
    const r = raw.rotation as Record<string, unknown>;
    if (r.maxBytes !== undefined) out.rotation.maxBytes = wholeNumber('capture.rotation.maxBytes', r.maxBytes, 1);
    if (r.maxSeconds !== undefined)
      out.rotation.maxSeconds = wholeNumber('capture.rotation.maxSeconds', r.maxSeconds, 1);
  }
  return out;
}

/**
 * The `copyToken` of config.json's text: what the endpoint's agents put in the copies they send
 * (copyHeader), so that a receiving agent tells a copy from a client's request carrying the same
 * header. Undefined when absent (a config written before it: every copy header is trusted).
 */
export function parseCopyToken(text: string): string | undefined {
  const token = (JSON.parse(text) as { copyToken?: unknown } | null)?.copyToken;
  if (token === undefined) return undefined;
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]{8,128}$/.test(token))
    throw new Error('copyToken must be 8 to 128 letters, digits, _ or -');
  return token;
}

/** Parses the `shadows` of config.json's text (none when absent); throws an Error naming the field. */
export function parseShadowsConfig(text: string): ShadowConfig[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON: ${(e as Error).message}`, { cause: e });
  }
  const list = (doc as { shadows?: unknown } | null)?.shadows;
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new Error('shadows must be a list');
  const names = new Set<string>();
  return list.map((raw: unknown, i) => {
    const at = `shadows[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${at} must be an object`);
    const r = raw as Record<string, unknown>;
    if (typeof r.name !== 'string' || !r.name) throw new Error(`${at}.name must be the shadow variant's name`);
    if (names.has(r.name)) throw new Error(`${at}.name ${JSON.stringify(r.name)} is given twice`);
    names.add(r.name);
    let url: URL;
    try {
      url = new URL(String(r.url));
    } catch {
      throw new Error(`${at}.url must be the shadow's http:// URL, not ${JSON.stringify(r.url)}`);
    }
    if (url.protocol !== 'http:') throw new Error(`${at}.url must be an http:// URL, not ${JSON.stringify(r.url)}`);
    const p = r.percent;
    if (typeof p !== 'number' || !(p >= 0 && p <= 100))
      throw new Error(`${at}.percent must be a number from 0 to 100, not ${JSON.stringify(p)}`);
    const compareRaw = r.compare ?? {};
    if (typeof compareRaw !== 'object' || compareRaw === null || Array.isArray(compareRaw))
      throw new Error(`${at}.compare must be an object`);
    const path = (compareRaw as { path?: unknown }).path;
    if (path !== undefined && typeof path !== 'string')
      throw new Error(`${at}.compare.path must be a string such as "$.predictions", not ${JSON.stringify(path)}`);
    const c = comparer(compareRaw);
    if (!c.ok) throw new Error(`${at}.compare: ${c.error}`);
    if (c.comparer.spec.kind !== 'labels' && c.comparer.spec.kind !== 'numbers')
      throw new Error(`${at}.compare.kind must be "labels" or "numbers", not ${JSON.stringify(c.comparer.spec.kind)}`);
    if (r.sources !== undefined && (!Array.isArray(r.sources) || r.sources.some((x) => typeof x !== 'string')))
      throw new Error(`${at}.sources must be a list of model versions`);
    if (r.reference !== undefined && r.reference !== 'own' && r.reference !== 'copy')
      throw new Error(`${at}.reference must be "own" or "copy", not ${JSON.stringify(r.reference)}`);
    return {
      reference: r.reference ?? 'own',
      ...(r.sources !== undefined ? { sources: r.sources as string[] } : {}),
      name: r.name,
      url: url.href.replace(/\/+$/, ''),
      percent: p,
      compare: c.comparer.spec,
      timeoutMs: r.timeoutMs === undefined ? shadowDefaults.timeoutMs : wholeNumber(`${at}.timeoutMs`, r.timeoutMs, 1),
      maxInFlight:
        r.maxInFlight === undefined ? shadowDefaults.maxInFlight : wholeNumber(`${at}.maxInFlight`, r.maxInFlight, 1),
    };
  });
}
