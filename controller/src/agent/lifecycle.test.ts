// The agent as a process of its own (node controller/src/agent/main.ts, as the image runs the bundle):
// SIGTERM with requests in flight, and a body far larger than what it may hold in memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../ci/processes.ts';
import { waitFor } from '../../../ci/wait.ts';
import { dataBytes } from './record.ts';
import { identityEnv, listenOn, readRecords, send, startModel, type Listening } from './testing/harness.ts';

const mainFile = fileURLToPath(new URL('./main.ts', import.meta.url));

interface Running {
  child: ChildProcess;
  url: string;
  admin: string;
  captureDir: string;
  output: () => string;
  exited: Promise<number | null>;
}

let dir: string;
let running: Running | undefined;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'agent-process-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  if (running && running.child.exitCode === null) {
    running.child.kill('SIGKILL');
    await running.exited;
  }
  running = undefined;
});

async function startProcess(model: string, capture: Record<string, unknown>, name: string): Promise<Running> {
  const captureDir = join(dir, name);
  const config = join(dir, `${name}.json`);
  writeFileSync(config, JSON.stringify({ capture: { destination: pathToFileURL(captureDir).href, ...capture } }));
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      mainFile,
      `--model=${model}`,
      `--listen=127.0.0.1:${port}`,
      `--admin-listen=127.0.0.1:${adminPort}`,
      '--model-ready-path=/ready',
      `--config=${config}`,
    ],
    {
      env: { PATH: process.env.PATH, ...identityEnv },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let output = '';
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const r: Running = {
    child,
    url: `http://127.0.0.1:${port}`,
    admin: `http://127.0.0.1:${adminPort}`,
    captureDir,
    output: () => output,
    exited,
  };
  await waitFor(
    'the agent to be ready',
    30_000,
    async () => ((await fetch(`${r.admin}/-/agent/ready`)).status === 200 ? true : undefined),
    r.output,
  );
  return r;
}

/** Peak and current resident memory of a process, in bytes. */
function memory(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { peak: kb('VmHWM'), now: kb('VmRSS') };
}

describe('the agent process', () => {
  let model: Listening;
  beforeAll(async () => {
    model = await startModel();
  });
  afterAll(() => model.close());

  it('on SIGTERM stops taking connections, finishes the 20 requests in flight and writes all of their records before it exits 0', async () => {
    running = await startProcess(
      model.url,
      { enabled: true, samplingPercent: 100, rotation: { maxBytes: 10_000_000, maxSeconds: 3600 } },
      'sigterm',
    );
    const r = running;
    const answers = Array.from({ length: 20 }, (_, i) =>
      send(r.url, {
        headers: { 'content-type': 'application/json', 'x-sleep-ms': '1500', 'x-ml-inference-id': `t${i}` },
        body: `{"i":${i}}`,
      }),
    );
    await waitFor('20 requests in flight', 10_000, async () =>
      (await (await fetch(`${r.admin}/-/agent/metrics`)).text()).match(/^ml_agent_in_flight\{[^}]*\} 20$/m)
        ? true
        : undefined,
    );
    r.child.kill('SIGTERM');
    await waitFor('the data port to refuse connections', 5000, async () =>
      (await send(r.url, { body: 'late', timeoutMs: 1000 }).then(
        () => false,
        () => true,
      ))
        ? true
        : undefined,
    );
    const got = await Promise.all(answers);
    expect(got.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(await r.exited, r.output()).toBe(0);
    // A probe sent before the agent got the signal may be answered and captured too; it has no id.
    const records = readRecords(r.captureDir).filter((x) => x.eventMetadata.inferenceId !== undefined);
    expect(records.map((x) => x.eventMetadata.inferenceId).sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => `t${i}`).sort(),
    );
    expect(r.output()).toMatch(
      /"msg":"stopped".*"inFlightAtSigterm":2\d,"unfinishedRequests":0,"recordsFlushed":2\d,"recordsDropped":0/,
    );
  }, 60_000);

  it('streams a 256 MiB request and answer without holding them (peak memory grows by far less), and flags the record truncated', async () => {
    // Streams the request back as it comes: neither side is ever whole in memory.
    const echo = await listenOn((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    });
    running = await startProcess(echo.url, { enabled: true, samplingPercent: 100, maxRecordBytes: 1000 }, 'large');
    const r = running;
    const size = 256 << 20;
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) % 251;
    const before = memory(r.child.pid!);
    const received = await new Promise<{ bytes: number; first: Buffer }>((resolve, reject) => {
      const req = http.request(
        `${r.url}/upload`,
        { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'x-ml-inference-id': 'big' } },
        (res) => {
          let bytes = 0;
          const first: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            if (bytes < 1000) first.push(c.subarray(0, 1000 - bytes));
            bytes += c.length;
          });
          res.on('end', () => resolve({ bytes, first: Buffer.concat(first) }));
        },
      );
      req.on('error', reject);
      let sent = 0;
      const more = () => {
        while (sent < size) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', more);
        }
        req.end();
      };
      more();
    });
    const after = memory(r.child.pid!);
    process.stderr.write(
      `large body: ${size >> 20} MiB each way; agent RSS before ${(before.now / 2 ** 20).toFixed(1)} MiB, peak after ${(after.peak / 2 ** 20).toFixed(1)} MiB\n`,
    );
    expect(received.bytes).toBe(size);
    expect(received.first.equals(chunk.subarray(0, 1000))).toBe(true);
    // Holding either side whole would take the body's size at least. Chunks already passed on are
    // freed by V8 in steps of its external-memory limit (64 MiB): about that much growth, whatever the size.
    expect(after.peak - before.now).toBeLessThan(size / 2);
    r.child.kill('SIGTERM');
    expect(await r.exited, r.output()).toBe(0);
    const [record] = readRecords(r.captureDir);
    expect(record.mlOperator.truncated).toBe(true);
    expect(dataBytes(record.captureData.endpointInput!).equals(chunk.subarray(0, 1000))).toBe(true);
    expect(dataBytes(record.captureData.endpointOutput!).equals(chunk.subarray(0, 1000))).toBe(true);
    await echo.close();
  }, 120_000);
});
