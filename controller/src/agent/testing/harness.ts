// What the agent's tests share: a model server on loopback, an agent started in this process with a
// config file in a temporary directory, a keep-alive client, and the records a file sink holds.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Env } from '../../fetcher/log.ts';
import { parseFlags } from '../config.ts';
import { startAgent, type Agent } from '../main.ts';
import type { CaptureRecord } from '../record.ts';
import type { Sink } from '../sink.ts';

export interface Listening {
  url: string;
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

/** A server on 127.0.0.1, at `port` (0: any free one). */
export async function listenOn(handler: http.RequestListener, port = 0): Promise<Listening> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    port: bound,
    server,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/**
 * The test model: /ready answers 200; any other request gets an answer derived from its body (its
 * bytes reversed, with a content type chosen by the `x-answer-type` header, or the request's),
 * after `x-sleep-ms` milliseconds if asked; status from `x-status`.
 */
export function startModel(): Promise<Listening> {
  return listenOn((req, res) => {
    if (req.url === '/ready') return res.end('ok');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.from(Buffer.concat(chunks).reverse());
      const type =
        (req.headers['x-answer-type'] as string | undefined) ??
        req.headers['content-type'] ??
        'application/octet-stream';
      const answer = () => {
        res.writeHead(Number(req.headers['x-status'] ?? 200), {
          'content-type': type,
          'x-model': 'test',
          'content-length': body.length,
        });
        res.end(body);
      };
      const sleep = Number(req.headers['x-sleep-ms'] ?? 0);
      if (sleep) setTimeout(answer, sleep);
      else answer();
    });
  });
}

export interface TestAgent {
  agent: Agent;
  dir: string;
  captureDir: string;
  url: string;
  admin: string;
  logs: string[];
  writeConfig(capture: unknown): void;
  records(): CaptureRecord[];
  /** SIGTERM's work (drain, flush); the files stay for records(). */
  stop(): Promise<void>;
  /** Stops, and removes the files. */
  dispose(): Promise<void>;
}

export const identityEnv: Env = {
  ML_NAMESPACE: 'ns1',
  ML_ENDPOINT: 'titanic',
  ML_VARIANT: 'a',
  ML_MODEL_VERSION: 'v123',
  ML_POD_NAME: 'titanic-a-pod-1',
};

export async function startTestAgent(
  model: string,
  capture: unknown,
  options: { flags?: string[]; env?: Env; openSink?: (destination: string) => Promise<Sink> } = {},
): Promise<TestAgent> {
  const dir = mkdtempSync(join(tmpdir(), 'agent-test-'));
  const captureDir = join(dir, 'capture');
  const configPath = join(dir, 'config.json');
  const writeConfig = (c: unknown) =>
    writeFileSync(configPath, typeof c === 'string' ? c : JSON.stringify({ capture: c }));
  writeConfig(
    typeof capture === 'object' && capture !== null && !('destination' in capture)
      ? { destination: pathToFileURL(captureDir).href, ...capture }
      : capture,
  );
  const logs: string[] = [];
  const log = (level: string, msg: string, fields: Record<string, unknown> = {}) =>
    logs.push(JSON.stringify({ level, msg, ...fields }));
  const flags = parseFlags([
    `--model=${model}`,
    '--listen=127.0.0.1:0',
    '--admin-listen=127.0.0.1:0',
    '--model-ready-path=/ready',
    `--config=${configPath}`,
    '--config-poll-seconds=0.1',
    ...(options.flags ?? []),
  ]);
  const env = { ...identityEnv, ...options.env };
  const agent = await startAgent(flags, env, log, options.openSink);
  return {
    agent,
    dir,
    captureDir,
    url: `http://127.0.0.1:${agent.dataPort}`,
    admin: `http://127.0.0.1:${agent.adminPort}`,
    logs,
    writeConfig,
    records: () => readRecords(captureDir),
    async stop() {
      await agent.stop();
    },
    async dispose() {
      await agent.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every .jsonl file under `dir`, relative paths, sorted. */
export function captureFiles(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.jsonl'))
      .sort();
  } catch {
    return [];
  }
}

export function readRecords(dir: string): CaptureRecord[] {
  return captureFiles(dir).flatMap((f) =>
    readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as CaptureRecord),
  );
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  ms: number;
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** One request over kept-alive connections; resolves with the whole answer. */
export function send(
  url: string,
  options: {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: Buffer | string;
    timeoutMs?: number;
  } = {},
): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      url + (options.path ?? '/predict'),
      {
        method: options.method ?? 'POST',
        headers: options.headers,
        agent: keepAlive,
        timeout: options.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            ms: performance.now() - started,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Runs `count` calls of `one(i)` with at most `concurrency` at once. */
export async function inParallel<T>(count: number, concurrency: number, one: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        out[i] = await one(i);
      }
    }),
  );
  return out;
}
