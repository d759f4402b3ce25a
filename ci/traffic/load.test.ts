// The load client against the local cluster's real model server (on loopback): open-loop sending,
// a deadline near each request's expected duration, and the served rule catching what a count of
// non-2xx answers misses: a stall, a hang, a reset, a crash mid-answer, a 200 from the wrong model.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelServer } from '../cluster/pod-runtime/model-server.ts';
import { freePort } from '../processes.ts';
import { percentileInterval, servedProblems, startLoad, timingOf, type LoadOptions } from './load.ts';

const identity = {
  pod: 'm-1a2b3c-xyz12',
  namespace: 'team',
  node: 'node-1',
  container: 'server',
  image: 'acme/m:1',
  model: 'm',
  instance: 'm-1a2b3c',
  version: 'v1',
};
const rule = { backends: ['m-1a2b3c'], namespace: 'team', maxExtraMs: 1000 };
let servers: ModelServer[] = [];
let children: ChildProcess[] = [];

async function serve(env: Record<string, string> = {}): Promise<string> {
  const port = await freePort();
  const server = new ModelServer({ identity, address: '127.0.0.1', port, readinessPath: '/healthz', env });
  await server.listen();
  servers.push(server);
  return `http://127.0.0.1:${port}/predict`;
}

/** The model server in a process of its own, as in a cluster: a stall of this one leaves it running. */
async function serveElsewhere(env: Record<string, string>): Promise<string> {
  const port = await freePort();
  const script = `
    import { ModelServer } from ${JSON.stringify(join(import.meta.dirname, '..', 'cluster', 'pod-runtime', 'model-server.ts'))};
    const server = new ModelServer(${JSON.stringify({ identity, address: '127.0.0.1', port, readinessPath: '/healthz', env })});
    await server.listen();
    process.stdout.write('listening\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the model server exited with ${code}`)));
  });
  return `http://127.0.0.1:${port}/predict`;
}

/** Blocks this process's event loop for `ms` (a busy test process); returns when it began, on the run's clock. */
function blockFor(load: { elapsed(): number }, ms: number): number {
  const from = load.elapsed();
  while (load.elapsed() - from < ms) continue;
  return from;
}

/** 40 requests at 40 per second, open loop. */
const startRun = (url: string, o: Partial<LoadOptions> = {}) =>
  startLoad({ url, host: 'm.team.example.com', requests: 40, rate: 40, concurrency: 64, maxDurationMs: 20_000, ...o });

async function run(url: string, o: Partial<LoadOptions> = {}) {
  const load = startRun(url, o);
  const report = await load.done;
  return { samples: load.samples, report, problems: servedProblems(load.samples, rule, report.capped) };
}

afterEach(() => {
  for (const s of servers) s.stop();
  servers = [];
  for (const c of children) c.kill('SIGKILL');
  children = [];
});

describe('the load client and the served rule', () => {
  it('finds a healthy server served every request, each within its asked duration', async () => {
    const { report, problems } = await run(await serve(), { sleepMs: (i) => (i % 4 === 0 ? 300 : 0) });
    expect(problems).toEqual([]);
    expect(report.failed).toBe(0);
    expect(report.worstExtraMs).toBeLessThan(1000);
  });

  it('keeps sending on time while a cold start stalls the first answers 2 s, and calls them too slow though none failed', async () => {
    const { samples, report, problems } = await run(await serve({ DEMO_STALL_MS: '2000', DEMO_STALL_SECONDS: '0.5' }), {
      timeoutMs: 5000,
    });
    // Open loop: all 40 sent within the second they were due in, the slow answers notwithstanding.
    expect(report.sent).toBe(40);
    expect(samples.at(-1)!.start).toBeLessThan(1500);
    expect(report.failed).toBe(0);
    expect(report.worstExtraMs).toBeGreaterThanOrEqual(1900);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.every((p) => /took \d+ ms beyond the 0 ms it asked for, more than 1000 ms/.test(p))).toBe(true);
    // Each says where the time went: the connection opened at once, the request reached the model
    // server at once (its x-model-received-at), the server took the 2 s, the status line came late.
    const slow = samples.filter((s) => s.end - s.start > 1900);
    expect(slow.length).toBeGreaterThan(0);
    for (const s of slow) {
      expect(s.timing?.connectMs ?? 0).toBeLessThan(500);
      expect(s.timing?.reachedMs).toBeLessThan(500);
      expect(s.timing?.serverMs).toBeGreaterThanOrEqual(1900);
      expect(s.timing?.headersMs).toBeGreaterThanOrEqual(1900);
    }
    expect(problems[0]).toMatch(
      /\((new connection in \d+ ms|reused connection), reached the model server at -?\d+ ms, answered there in \d+ ms, status line at \d+ ms\)$/,
    );
  });

  it("does not blame the data plane for the client's own stall, and says how long it was", async () => {
    const url = await serveElsewhere({ DEMO_LATENCY_MS: '100' });
    const load = startRun(url);
    // The test process's event loop blocked 1.5 s while requests are in flight (as a busy test
    // process, or a machine with no CPU for it, holds it): their answers are read that much later.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const blockedAt = blockFor(load, 1500);
    const report = await load.done;
    const spanning = load.samples.filter((s) => s.start < blockedAt && s.end > blockedAt + 1400);
    expect(spanning.length).toBeGreaterThan(0);
    for (const s of spanning) {
      expect(s.timing?.clientStalledMs).toBeGreaterThanOrEqual(1200);
      expect(timingOf(s)).toMatch(/the client's event loop stood still \d+ ms meanwhile/);
    }
    expect(report.worstExtraMs).toBeLessThan(1000);
    expect(servedProblems(load.samples, rule, report.capped)).toEqual([]);
  });

  it('still calls a model server that stalls 2 s too slow when the client stalls meanwhile', async () => {
    const url = await serveElsewhere({ DEMO_STALL_MS: '2000', DEMO_STALL_SECONDS: '0.5' });
    const load = startRun(url, { timeoutMs: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    blockFor(load, 1500);
    const report = await load.done;
    expect(report.worstExtraMs).toBeGreaterThanOrEqual(1900);
    const problems = servedProblems(load.samples, rule, report.capped);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.every((p) => /took \d+ ms beyond the 0 ms it asked for, more than 1000 ms/.test(p))).toBe(true);
  });

  it('counts the requests held back by the in-flight cap', async () => {
    const { report, problems } = await run(await serve({ DEMO_LATENCY_MS: '500' }), { concurrency: 4, requests: 20 });
    expect(report.capped).toBeGreaterThan(0);
    expect(problems).toContain(
      `${report.capped} requests waited for the in-flight cap: answers were slow enough to hold sends back`,
    );
  });

  it('cuts a request that hangs at its deadline, its asked duration plus the slack', async () => {
    const { samples, problems } = await run(await serve({ DEMO_FAULT: 'hang' }), {
      requests: 3,
      sleepMs: () => 200,
      timeoutMs: 500,
    });
    for (const s of samples) {
      expect(s.status).toBe(0);
      expect(s.error).toBe('no answer within 700 ms');
      expect(s.end - s.start).toBeGreaterThanOrEqual(690);
      expect(s.end - s.start).toBeLessThan(1500);
    }
    expect(problems).toHaveLength(3);
  });

  it.each([
    ['reset', /^request \d+ \(sent at [\d.]+ s\): no answer \(ECONNRESET\)$/],
    [
      'crash',
      /^request \d+ \(sent at [\d.]+ s\): no answer \((response: aborted|answer cut short after status 200)\)$/,
    ],
    [
      'wrong',
      /^request \d+ \(sent at [\d.]+ s\): 200 from another-model-v1 \(pod m-1a2b3c-xyz12\), not a backend of the endpoint \(m-1a2b3c\)$/,
    ],
  ])('calls an answer that fails by %s not served', async (fault, problem) => {
    const { report, problems } = await run(await serve({ DEMO_FAULT: fault, DEMO_FAULT_RATE: '0.5' }), {
      requests: 60,
      rate: 60,
    });
    const faulty = problems.length;
    process.stdout.write(
      `[load] DEMO_FAULT=${fault} for half the requests: ${faulty} of ${report.sent} not served, ${report.failed} failed by status\n`,
    );
    expect(faulty).toBeGreaterThan(10);
    expect(faulty).toBeLessThan(50);
    for (const p of problems) expect(p).toMatch(problem);
    // A 200 from the wrong model is no failure by status: only the served rule sees it.
    expect(report.failed).toBe(fault === 'wrong' ? 0 : faulty);
  });

  it('asks for a fault by header, request by request', async () => {
    const { samples } = await run(await serve(), { requests: 1, headers: { 'x-demo-fault': 'reset' } });
    expect(samples[0]).toMatchObject({ status: 0, error: 'ECONNRESET' });
  });

  it('refuses a fault it does not know', () => {
    expect(
      () =>
        new ModelServer({
          identity,
          address: '127.0.0.1',
          port: 1,
          readinessPath: '/healthz',
          env: { DEMO_FAULT: 'explode' },
        }),
    ).toThrow('DEMO_FAULT=explode: expected one of reset, hang, crash, wrong');
  });

  it('calls an answer from another namespace, or with a wrong prediction, not served', () => {
    const base = { i: 0, start: 0, end: 5, expectedMs: 0, status: 200 };
    const problems = servedProblems(
      [
        { ...base, backend: { pod: 'm-1a2b3c-xyz12', namespace: 'elsewhere', instance: 'm-1a2b3c' } },
        {
          ...base,
          i: 1,
          backend: { pod: 'm-1a2b3c-xyz12', namespace: 'team', instance: 'm-1a2b3c', labels: ['virginica'] },
        },
        { ...base, i: 2, backend: { pod: 'm-1a2b3c-abc', model: 'iris/1.0.0', labels: ['setosa'] } },
        { ...base, i: 3, backend: { pod: 'other-9z-abc', model: 'iris/1.0.0', labels: ['setosa'] } },
      ],
      {
        ...rule,
        answer: (s) =>
          s.backend?.labels?.[0] === 'setosa'
            ? undefined
            : `labels ${JSON.stringify(s.backend?.labels)}, expected ["setosa"]`,
      },
    );
    expect(problems).toEqual([
      "request 0 (sent at 0.0 s): 200 from pod m-1a2b3c-xyz12 of namespace elsewhere, not the endpoint's team",
      'request 1 (sent at 0.0 s): 200 from pod m-1a2b3c-xyz12: labels ["virginica"], expected ["setosa"]',
      'request 3 (sent at 0.0 s): 200 from iris/1.0.0 (pod other-9z-abc), not a backend of the endpoint (m-1a2b3c)',
    ]);
  });
});

describe('percentileInterval', () => {
  it('bounds a percentile by the order statistics of its binomial interval', () => {
    const sorted = Array.from({ length: 1000 }, (_, i) => i + 1);
    // The median of 1000: 500 +- 3.29 x 15.8 samples.
    expect(percentileInterval(sorted, 50)).toEqual([447, 554]);
    // The 99th of 1,000: 990 +- 3.29 x 3.15, past the largest sample: the run cannot bound it above.
    expect(percentileInterval(sorted, 99)).toEqual([979, Infinity]);
    // Of 3,000: ranks 2,952 to 2,989.
    const more = Array.from({ length: 3000 }, (_, i) => i + 1);
    expect(percentileInterval(more, 99)).toEqual([2952, 2989]);
    expect(percentileInterval([], 99)).toEqual([-Infinity, Infinity]);
    expect(percentileInterval([7], 99)).toEqual([-Infinity, Infinity]);
  });

  it('holds the true percentile of a known distribution in at least 99% of seeded draws', () => {
    // Exponential samples (mean 10 ms, a latency's long right tail): the true p99 is 10 ln 100.
    const truth = 10 * Math.log(100);
    let x = 12345;
    const uniform = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) + 0.5) / 2 ** 32;
    let held = 0;
    for (let draw = 0; draw < 200; draw++) {
      const sorted = Array.from({ length: 3000 }, () => -10 * Math.log(uniform())).sort((a, b) => a - b);
      const [low, high] = percentileInterval(sorted, 99);
      if (low <= truth && truth <= high) held++;
    }
    expect(held).toBeGreaterThanOrEqual(198);
  });
});
