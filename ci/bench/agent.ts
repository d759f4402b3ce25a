// `npm run bench:agent`: what the model agent costs. One model server process (a minimal node server
// answering 5 ms after a request ends: a timer, almost no CPU of its own) and the agent as the image runs it (controller/bundle.ts's
// dist/agent/main.js, its own process), with 10% of requests captured to a file sink. In the same run,
// alternating 15 s slices, the same open-loop load of 500 requests/s goes direct to the model and
// through the agent; then each is driven to saturation (closed loop, 32 at a time) in four pairs of 5 s,
// their order alternating. Prints the
// added latency at p50 and p99, the throughput ratio, and the agent's RSS at the start and end of the
// run (and its peak). Then shadows, in the same run: a second model server as the shadow, and the same
// 500 requests/s through the agent with no shadow, a 10% and a 100% shadow, and a 100% shadow that
// answers 500, one that never answers and one that is gone (nothing listens), in alternating slices (at
// most a minute of each): the client's latency and the agent's CPU per request in each, and what the agent counted for each
// shadow. Last, the product's own scikit-learn server (examples/sklearn-server) direct and through an
// agent, at 100 requests/s and at saturation (with Debian's python3-sklearn; skipped without it).
// The agent's own memory (anonymous RSS) is traced over the slices, with its slope per minute of the
// run (direct slices included: `-- --minutes=10` is 10 minutes through the agent in a 20-minute run).
// The client (this process) runs on CPU 0 and the pod's processes (model, agent, shadows) on the
// others, as a pod's clients are on other machines: otherwise the client's own CPU competes with the
// agent and the saturation figures measure the load generator as much as the agent. `--shared-cpus`
// lets every process run anywhere, as before.
// No assertions: the figures are for the issue's note.
//   npm run bench:agent [-- --minutes=1] [--shared-cpus]   (minutes of load through the agent; as many direct)
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundleProgram } from '../../controller/bundle.ts';
import { agentNodeFlags } from '../../controller/src/desired/agent.ts';
import { freePort } from '../processes.ts';
import { percentile } from '../traffic/load.ts';
import { waitFor } from '../wait.ts';

const argv = process.argv.slice(2);
const minutesArg = argv.find((a) => a.startsWith('--minutes='));
const sharedCpus = argv.includes('--shared-cpus');
const unknown = argv.filter((a) => !a.startsWith('--minutes=') && a !== '--shared-cpus');
const minutes = minutesArg ? Number(minutesArg.slice('--minutes='.length)) : 1;
if (unknown.length || !(minutes > 0)) {
  process.stderr.write('usage: npm run bench:agent [-- --minutes=N] [--shared-cpus]\n');
  process.exit(2);
}

/** The CPUs the pod's processes run on (taskset's list), or none when every process runs anywhere. */
const podCpus = (() => {
  const cpus = availableParallelism();
  if (sharedCpus || cpus < 2) return undefined;
  // Every thread of this process (the client) onto CPU 0; what it starts from now on is placed apart.
  execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  return cpus === 2 ? '1' : `1-${cpus - 1}`;
})();
process.stdout.write(
  podCpus
    ? `agent bench: the client on CPU 0, the model, the agent and the shadows on CPU ${podCpus}\n`
    : `agent bench: every process on any CPU (${availableParallelism()})\n`,
);
const rate = 500;
const sliceMs = 15_000;

const modelSource = `
const http = require('node:http');
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => setTimeout(() => {
    const body = JSON.stringify({ prediction: Buffer.concat(chunks).length % 7, model: 'bench' });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }, 5));
}).listen(Number(process.argv[1]), '127.0.0.1');
`;

/** A shadow that fails every request with a 500. */
const failingSource = `
require('node:http').createServer((req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(500, { 'content-length': 6 }); res.end('broken'); });
}).listen(Number(process.argv[1]), '127.0.0.1');
`;

/** A shadow that takes every request and never answers. */
const hangingSource = `
require('node:http').createServer((req) => req.resume()).listen(Number(process.argv[1]), '127.0.0.1');
`;

function start(
  args: string[],
  what: string,
  command = process.execPath,
  env: Record<string, string> = {},
): { child: ChildProcess; exited: Promise<void>; output: () => string } {
  // taskset execs the command in its own process: the pid is the command's.
  const placed = podCpus ? (['taskset', ['-c', podCpus, command, ...args]] as const) : ([command, args] as const);
  const child = spawn(placed[0], placed[1], {
    // Both kept: the agent logs to stderr, the scikit-learn server to stdout.
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...env,
      PATH: process.env.PATH,
      ML_NAMESPACE: 'bench',
      ML_ENDPOINT: 'bench',
      ML_VARIANT: 'a',
      ML_MODEL_VERSION: 'v1',
      ML_POD_NAME: 'bench-pod',
    },
  });
  let output = '';
  const keep = (c: Buffer) => (output = (output + c.toString()).slice(-4000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.once('exit', (code) => code && process.stderr.write(`${what} exited with ${code}: ${output}\n`));
  return { child, exited, output: () => output };
}

/** CPU seconds (user + system) a process has used. */
const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
};

/**
 * Resident memory in MiB: all of it, its peak, and its two parts: the process's own (anonymous: heap,
 * stacks, buffers) and the pages of files it maps (the node binary's code, the same pages for every
 * agent started from the image on a node).
 */
const rss = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) / 1024;
  return { now: kb('VmRSS'), peak: kb('VmHWM'), anonymous: kb('RssAnon'), files: kb('RssFile') };
};
const rssParts = (r: ReturnType<typeof rss>) =>
  `${r.now.toFixed(1)} MiB (own ${r.anonymous.toFixed(1)}, mapped files ${r.files.toFixed(1)})`;

const agentPool = () => new http.Agent({ keepAlive: true, maxSockets: 256 });

/**
 * The bundled agent in front of the model at `ports.model`, as the image runs it; `ready` waits until
 * it is (which it is once the model is), `more` adding to what a timeout prints.
 */
function startBenchAgent(
  work: string,
  ports: { model: number; listen: number; admin: number },
  config: string,
  what: string,
): ReturnType<typeof start> & { ready(timeoutMs: number, more?: () => string): Promise<unknown> } {
  const agent = start(
    [
      ...agentNodeFlags,
      join(work, 'dist', 'agent', 'main.js'),
      `--model=http://127.0.0.1:${ports.model}`,
      `--listen=127.0.0.1:${ports.listen}`,
      `--admin-listen=127.0.0.1:${ports.admin}`,
      `--config=${config}`,
    ],
    what,
  );
  const ready = (timeoutMs: number, more: () => string = () => '') =>
    waitFor(
      `${what} ready`,
      timeoutMs,
      async () =>
        (await fetch(`http://127.0.0.1:${ports.admin}/-/agent/ready`).catch(() => undefined))?.status === 200
          ? true
          : undefined,
      () => `${more()} ${agent.output()}`,
    );
  return { ...agent, ready };
}

/** The latencies direct and through the agent (sorted in place), and what the agent added at p50 and p99. */
function latencyTable(
  latencies: { direct: number[]; agent: number[] },
  failures: { direct: { n: number }; agent: { n: number } },
): string {
  const d = latencies.direct.sort((a, b) => a - b);
  const a = latencies.agent.sort((x, y) => x - y);
  const row = (name: string, l: number[], f: number) =>
    `  ${name.padEnd(8)} ${String(l.length).padStart(7)} ${String(f).padStart(6)} ${percentile(l, 50).toFixed(2).padStart(8)} ${percentile(l, 99).toFixed(2).padStart(8)} ${(l.at(-1) ?? 0).toFixed(1).padStart(8)}`;
  return `  ${'PATH'.padEnd(8)} ${'ANSWERS'.padStart(7)} ${'FAILED'.padStart(6)} ${'P50 ms'.padStart(8)} ${'P99 ms'.padStart(8)} ${'MAX ms'.padStart(8)}\n${row('direct', d, failures.direct.n)}\n${row('agent', a, failures.agent.n)}\n  added by the agent: p50 ${(percentile(a, 50) - percentile(d, 50)).toFixed(2)} ms, p99 ${(percentile(a, 99) - percentile(d, 99)).toFixed(2)} ms`;
}

function once(url: string, pool: http.Agent, body: string): Promise<{ ms: number; ok: boolean }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      url,
      { method: 'POST', agent: pool, headers: { 'content-type': 'application/json' }, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ ms: performance.now() - started, ok: res.statusCode === 200 }));
        res.on('error', () => resolve({ ms: performance.now() - started, ok: false }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ ms: performance.now() - started, ok: false }));
    req.end(body);
  });
}

/** Open loop: one request every 1/perSecond s for `ms`, each at its time; returns the latencies. */
async function openLoop(
  url: string,
  pool: http.Agent,
  ms: number,
  out: number[],
  failures: { n: number },
  perSecond = rate,
  body: (i: number) => string = (i) => JSON.stringify({ features: [i, i % 3, 0.5] }),
): Promise<void> {
  const started = performance.now();
  const pending: Promise<void>[] = [];
  let i = 0;
  for (;;) {
    const due = started + (i * 1000) / perSecond;
    if (due - started >= ms) break;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      once(url, pool, body(i)).then((r) => {
        if (r.ok) out.push(r.ms);
        else failures.n++;
      }),
    );
    i++;
  }
  await Promise.all(pending);
}

/** Closed loop, `concurrency` at a time for `ms`: answers per second. */
async function saturate(url: string, ms: number, concurrency = 32, body = '{"features":[1,2,3]}'): Promise<number> {
  const pool = agentPool();
  const end = performance.now() + ms;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) if ((await once(url, pool, body)).ok) done++;
    }),
  );
  pool.destroy();
  return done / (ms / 1000);
}

/** The agent's capture settings in every section: 10% of requests to files under `dir`. */
const capturing = (dir: string) => ({
  enabled: true,
  samplingPercent: 10,
  destination: pathToFileURL(dir).href,
  rotation: { maxBytes: 4 << 20, maxSeconds: 30 },
});

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1] + sorted[mid]) / 2 : sorted[Math.floor(mid)];
};

/**
 * Saturation direct and through the agent in `pairs` pairs of `ms` each, their order alternating
 * (direct first, then the agent first, ...) so that neither side always runs on a warmer or a
 * busier machine: the medians, and the median ratio of the pairs with its range.
 */
async function saturation(
  direct: string,
  through: string,
  concurrency: number,
  body?: string,
  pairs = 4,
  ms = 5000,
): Promise<string> {
  const ratios: number[] = [];
  const directRates: number[] = [];
  const agentRates: number[] = [];
  for (let i = 0; i < pairs; i++) {
    const first = i % 2 === 0 ? direct : through;
    const second = first === direct ? through : direct;
    const a = await saturate(first, ms, concurrency, body);
    const b = await saturate(second, ms, concurrency, body);
    const [d, g] = first === direct ? [a, b] : [b, a];
    directRates.push(d);
    agentRates.push(g);
    ratios.push(g / d);
  }
  const pct = (r: number) => `${(r * 100).toFixed(1)}%`;
  return `  saturation (${concurrency} at a time, ${pairs} pairs of ${ms / 1000} s, alternating): direct ${median(directRates).toFixed(0)}/s, through the agent ${median(agentRates).toFixed(0)}/s (medians): ${pct(median(ratios))} of direct [${pct(Math.min(...ratios))}-${pct(Math.max(...ratios))}]\n`;
}

const work = mkdtempSync(join(tmpdir(), 'ml-operator-bench-agent-'));
const processes: ChildProcess[] = [];
try {
  await bundleProgram('agent', join(work, 'dist'));
  const [modelPort, port, adminPort] = [await freePort(), await freePort(), await freePort()];
  const [shadowPort, failingPort, hangingPort, gonePort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const model = start(['-e', modelSource, String(modelPort)], 'the model');
  const shadowModel = start(['-e', modelSource, String(shadowPort)], 'the shadow');
  const failingShadow = start(['-e', failingSource, String(failingPort)], 'the failing shadow');
  const hangingShadow = start(['-e', hangingSource, String(hangingPort)], 'the hanging shadow');
  processes.push(model.child, shadowModel.child, failingShadow.child, hangingShadow.child);
  const capture = join(work, 'capture');
  const config = join(work, 'config.json');
  const shadowPorts = { shadow: shadowPort, failing: failingPort, hanging: hangingPort, gone: gonePort };
  type ShadowName = keyof typeof shadowPorts;
  const writeConfig = (percents: Partial<Record<ShadowName, number>>) =>
    writeFileSync(
      config,
      JSON.stringify({
        capture: capturing(capture),
        // At 0% a shadow stays listed, as the controller lists one that is not ready: its figures stay.
        // The copies' timeout and in-flight cap are the agent's defaults (10 s, 16).
        shadows: Object.entries(shadowPorts).map(([name, p]) => ({
          name,
          url: `http://127.0.0.1:${p}`,
          percent: percents[name as ShadowName] ?? 0,
          compare: { path: '$.prediction' },
        })),
      }),
    );
  writeConfig({});
  const agent = startBenchAgent(work, { model: modelPort, listen: port, admin: adminPort }, config, 'the agent');
  processes.push(agent.child);
  await agent.ready(30_000);
  const direct = `http://127.0.0.1:${modelPort}/predict`;
  const through = `http://127.0.0.1:${port}/predict`;
  // Warm-up: both paths, so that neither pays for JIT compilation in the figures.
  const warm = { n: 0 };
  const [poolDirect, poolAgent] = [agentPool(), agentPool()];
  await openLoop(direct, poolDirect, 3000, [], warm);
  await openLoop(through, poolAgent, 3000, [], warm);
  const rssStart = rss(agent.child.pid!);
  process.stdout.write(
    `agent bench: ${minutes} min at ${rate} req/s through the agent (10% captured to a file sink) and as long direct, in ${sliceMs / 1000} s slices; agent RSS at start ${rssParts(rssStart)}\n`,
  );
  const latencies = { direct: [] as number[], agent: [] as number[] };
  const failures = { direct: { n: 0 }, agent: { n: 0 } };
  const slices = Math.max(1, Math.round((minutes * 60_000) / sliceMs));
  const rssTrace: { minutes: number; anonymous: number }[] = [];
  const traceStart = performance.now();
  for (let s = 0; s < slices; s++) {
    await openLoop(direct, poolDirect, sliceMs, latencies.direct, failures.direct);
    await openLoop(through, poolAgent, sliceMs, latencies.agent, failures.agent);
    const now = rss(agent.child.pid!);
    rssTrace.push({ minutes: (performance.now() - traceStart) / 60_000, anonymous: now.anonymous });
    process.stdout.write(`  slice ${s + 1}/${slices}: agent RSS ${rssParts(now)}\n`);
  }
  const rssEnd = rss(agent.child.pid!);
  poolDirect.destroy();
  poolAgent.destroy();
  process.stdout.write(`${latencyTable(latencies, failures)}\n`);
  process.stdout.write(await saturation(direct, through, 32));
  const status = (await (await fetch(`http://127.0.0.1:${adminPort}/-/agent/status`)).json()) as {
    capture: { written: number; dropped: number; healthy: boolean };
  };
  process.stdout.write(
    `  agent RSS: start ${rssParts(rssStart)}, end of the 500 req/s run ${rssParts(rssEnd)}, peak ${rss(agent.child.pid!).peak.toFixed(1)} MiB; capture: ${status.capture.written} written, ${status.capture.dropped} dropped, healthy ${status.capture.healthy} (records still in the open file are not counted yet)\n`,
  );
  // Growth: the least-squares slope of the agent's own memory over the slices, after the first
  // (which holds the warm-up's growth of the heap to its working size).
  const steady = rssTrace.slice(1);
  if (steady.length >= 3) {
    const mx = steady.reduce((a, p) => a + p.minutes, 0) / steady.length;
    const my = steady.reduce((a, p) => a + p.anonymous, 0) / steady.length;
    const slope =
      steady.reduce((a, p) => a + (p.minutes - mx) * (p.anonymous - my), 0) /
      steady.reduce((a, p) => a + (p.minutes - mx) ** 2, 0);
    const own = steady.map((p) => p.anonymous);
    process.stdout.write(
      `  agent's own memory over slices 2..${rssTrace.length}: ${Math.min(...own).toFixed(1)}..${Math.max(...own).toFixed(1)} MiB, slope ${slope.toFixed(3)} MiB/min over ${(steady.at(-1)!.minutes - steady[0].minutes).toFixed(1)} min\n`,
    );
  }

  // Shadows: the same load through the agent with none, 10% and 100% mirrored, and a 100% shadow
  // that fails, hangs or is gone, slices alternating.
  type Shadowed = {
    label: string;
    percents: Partial<Record<ShadowName, number>>;
    latencies: number[];
    failures: { n: number };
    cpu: number;
    answers: number;
  };
  const modes: Shadowed[] = (
    [
      ['none', {}],
      ['10%', { shadow: 10 }],
      ['100%', { shadow: 100 }],
      ['500', { failing: 100 }],
      ['hangs', { hanging: 100 }],
      ['gone', { gone: 100 }],
    ] as const
  ).map(([label, percents]) => ({ label, percents, latencies: [], failures: { n: 0 }, cpu: 0, answers: 0 }));
  const shadowStatus = async () =>
    (
      (await (await fetch(`http://127.0.0.1:${adminPort}/-/agent/status`)).json()) as {
        shadows: {
          name: string;
          percent: number;
          inFlight: number;
          dropped: number;
          skipped: number;
          sinceStart: { requests: number; compared: number; agreement?: number; shadow: { errors: number } };
        }[];
      }
    ).shadows;
  // At most a minute each: the modes' figures need no longer, and a long run is for the memory trace.
  const shadowSlices = Math.min(slices, 4);
  const poolShadowed = agentPool();
  process.stdout.write(
    `agent bench, shadows: ${(shadowSlices * sliceMs) / 60_000} min each at ${rate} req/s through the agent with no shadow, a 10% and a 100% shadow (a second model server), and a 100% shadow that answers 500, hangs or is gone, in ${sliceMs / 1000} s slices\n`,
  );
  for (let s = 0; s < shadowSlices; s++) {
    for (const mode of modes) {
      writeConfig(mode.percents);
      await waitFor(`the agent mirroring as ${mode.label}`, 10_000, async () => {
        const shadows = await shadowStatus();
        return shadows.length === 4 && shadows.every((x) => x.percent === (mode.percents[x.name as ShadowName] ?? 0))
          ? true
          : undefined;
      });
      const before = cpuSeconds(agent.child.pid!);
      const answered = mode.latencies.length;
      await openLoop(through, poolShadowed, sliceMs, mode.latencies, mode.failures);
      mode.cpu += cpuSeconds(agent.child.pid!) - before;
      mode.answers += mode.latencies.length - answered;
    }
    process.stdout.write(`  slice ${s + 1}/${shadowSlices} of each done\n`);
  }
  poolShadowed.destroy();
  // The hanging shadow's last copies end at their timeout (10 s).
  const counted = await waitFor('the copies in flight to end', 20_000, async () => {
    const shadows = await shadowStatus();
    return shadows.every((x) => x.inFlight === 0) ? shadows : undefined;
  });
  process.stdout.write(
    `  ${'SHADOW'.padEnd(8)} ${'ANSWERS'.padStart(7)} ${'FAILED'.padStart(6)} ${'P50 ms'.padStart(8)} ${'P99 ms'.padStart(8)} ${'MAX ms'.padStart(8)} ${'AGENT CPU ms/req'.padStart(17)}\n`,
  );
  for (const mode of modes) {
    const l = mode.latencies.sort((x, y) => x - y);
    process.stdout.write(
      `  ${mode.label.padEnd(8)} ${String(l.length).padStart(7)} ${String(mode.failures.n).padStart(6)} ${percentile(l, 50).toFixed(2).padStart(8)} ${percentile(l, 99).toFixed(2).padStart(8)} ${(l.at(-1) ?? 0).toFixed(1).padStart(8)} ${((mode.cpu * 1000) / Math.max(1, mode.answers)).toFixed(3).padStart(17)}\n`,
    );
  }
  const none = modes[0].latencies;
  process.stdout.write(
    `  added to the client's latency, against no shadow: ${modes
      .slice(1)
      .map(
        (m) =>
          `${m.label}: p50 ${(percentile(m.latencies, 50) - percentile(none, 50)).toFixed(2)} ms, p99 ${(percentile(m.latencies, 99) - percentile(none, 99)).toFixed(2)} ms`,
      )
      .join('; ')}\n`,
  );
  for (const s of counted)
    process.stdout.write(
      `  shadow ${s.name.padEnd(8)} copies ${s.sinceStart.requests}, compared ${s.sinceStart.compared} (agreement ${s.sinceStart.agreement ?? '-'}), shadow errors ${s.sinceStart.shadow.errors}, dropped ${s.dropped}, skipped ${s.skipped}\n`,
    );
  agent.child.kill('SIGTERM');
  await agent.exited;
  await sklearnServer(work, processes);
} finally {
  for (const p of processes) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}

/**
 * The product's own model server (examples/sklearn-server, iris 1.0.0 trained here by its train.py),
 * direct and through an agent capturing 10%: what a model that does real work per request (Python,
 * scikit-learn's predict) loses to the agent, in latency at a rate such a pod serves and in
 * throughput. Needs Debian's python3-sklearn (the image's own packages); skipped without it.
 */
async function sklearnServer(work: string, processes: ChildProcess[]): Promise<void> {
  const python = '/usr/bin/python3';
  if (spawnSync(python, ['-c', 'import sklearn, joblib'], { stdio: 'ignore' }).status !== 0) {
    process.stdout.write(
      `agent bench, scikit-learn server: skipped: ${python} cannot import sklearn (apt-get install python3-sklearn)\n`,
    );
    return;
  }
  const perSecond = 100;
  const slices = 4;
  const examples = fileURLToPath(new URL('../../examples/sklearn-server/', import.meta.url));
  const artifacts = join(work, 'artifacts');
  // Its error, if any, carries the script's stderr.
  execFileSync(python, ['-B', join(examples, 'train.py'), artifacts], { stdio: ['ignore', 'ignore', 'pipe'] });
  const modelDir = join(work, 'iris');
  mkdirSync(modelDir);
  execFileSync('tar', ['-xzf', join(artifacts, 'iris-1.0.0.tar.gz'), '-C', modelDir]);
  const [serverPort, port, adminPort] = [await freePort(), await freePort(), await freePort()];
  const server = start([join(examples, 'server.py')], 'the scikit-learn server', python, {
    MODEL_PATH: modelDir,
    PORT: String(serverPort),
    HOST: '127.0.0.1',
  });
  processes.push(server.child);
  const config = join(work, 'sklearn-config.json');
  writeFileSync(config, JSON.stringify({ capture: capturing(join(work, 'sklearn-capture')) }));
  const agent = startBenchAgent(
    work,
    { model: serverPort, listen: port, admin: adminPort },
    config,
    "the scikit-learn server's agent",
  );
  processes.push(agent.child);
  // Ready once the model is: the server loads scikit-learn and the model first.
  await agent.ready(60_000, server.output);
  const direct = `http://127.0.0.1:${serverPort}/predict`;
  const through = `http://127.0.0.1:${port}/predict`;
  const row = (i: number) => JSON.stringify({ instances: [[4.3 + (i % 36) / 10, 3.0, 1.4 + (i % 50) / 10, 0.2]] });
  const [poolDirect, poolAgent] = [agentPool(), agentPool()];
  const warm = { n: 0 };
  await openLoop(direct, poolDirect, 3000, [], warm, perSecond, row);
  await openLoop(through, poolAgent, 3000, [], warm, perSecond, row);
  process.stdout.write(
    `agent bench, scikit-learn server (iris 1.0.0, one row per request): ${perSecond} req/s direct and through the agent (10% captured) in ${slices} alternating ${sliceMs / 1000} s slices each, then each at saturation\n`,
  );
  const latencies = { direct: [] as number[], agent: [] as number[] };
  const failures = { direct: { n: 0 }, agent: { n: 0 } };
  const cpu = { server: 0, agent: 0 };
  for (let s = 0; s < slices; s++) {
    await openLoop(direct, poolDirect, sliceMs, latencies.direct, failures.direct, perSecond, row);
    const before = { server: cpuSeconds(server.child.pid!), agent: cpuSeconds(agent.child.pid!) };
    await openLoop(through, poolAgent, sliceMs, latencies.agent, failures.agent, perSecond, row);
    cpu.server += cpuSeconds(server.child.pid!) - before.server;
    cpu.agent += cpuSeconds(agent.child.pid!) - before.agent;
  }
  poolDirect.destroy();
  poolAgent.destroy();
  const answered = Math.max(1, latencies.agent.length);
  process.stdout.write(
    `${latencyTable(latencies, failures)}; CPU per request through the agent: server ${((cpu.server * 1000) / answered).toFixed(3)} ms, agent ${((cpu.agent * 1000) / answered).toFixed(3)} ms\n`,
  );
  const body = row(7);
  process.stdout.write(await saturation(direct, through, 16, body));
  agent.child.kill('SIGTERM');
  server.child.kill('SIGTERM');
  await Promise.all([agent.exited, server.exited]);
}
