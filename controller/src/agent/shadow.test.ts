// Shadows mirrored by the agent, as a client and a data scientist see them: the client's answers are
// the serving model's, never slower for a shadow that fails, hangs or is gone; the agreement the agent
// reports is exactly the share of predictions the two models share; captured records hold both answers.
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { binomialInterval } from '../../../ci/traffic/load.ts';
import { waitFor } from '../../../ci/wait.ts';
import { dataBytes } from './record.ts';
import type { ShadowStatus } from './shadow.ts';
import { inParallel, listenOn, send, startTestAgent, type Listening, type TestAgent } from './testing/harness.ts';

/**
 * A classifier of rows of numbers: label = (sum of the row's integer parts + shift) mod 3, except that
 * `disagreeEvery` > 0 changes the label of every row whose first value is a multiple of it. Answers
 * {"predictions": [label, ...]} for {"instances": [[...], ...]}; status from x-status, delay from x-sleep-ms.
 */
function classifier(options: { disagreeEvery?: number; seen?: string[]; port?: number } = {}): Promise<Listening> {
  return listenOn((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      options.seen?.push(
        `${req.method} ${req.url} ${String(req.headers['x-ml-inference-id'] ?? '')} ${req.headers['accept-encoding'] ?? '-'}`,
      );
      const status = Number(req.headers['x-status'] ?? 200);
      const rows = (JSON.parse(Buffer.concat(chunks).toString() || '{"instances":[]}') as { instances: number[][] })
        .instances;
      const predictions = rows.map((r) => {
        const label = r.reduce((s, x) => s + Math.trunc(x), 0) % 3;
        const every = options.disagreeEvery ?? 0;
        return every > 0 && Math.trunc(r[0]) % every === 0 ? (label + 1) % 3 : label;
      });
      const body = JSON.stringify({ predictions });
      const answer = () => {
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      const sleep = Number(req.headers['x-sleep-ms'] ?? 0);
      if (sleep) setTimeout(answer, sleep);
      else answer();
    });
  }, options.port);
}

const shadowOf = (name: string, url: string, more: Record<string, unknown> = {}) => ({
  name,
  url,
  percent: 100,
  compare: { path: '$.predictions' },
  ...more,
});

let serving: Listening;
let agent: TestAgent | undefined;
const closers: (() => Promise<void>)[] = [];
beforeAll(async () => {
  serving = await classifier();
});
afterAll(() => serving.close());
afterEach(async () => {
  await agent?.dispose();
  agent = undefined;
  for (const close of closers.splice(0)) await close();
});

/** The copy token of the endpoint the test's agents belong to (as the controller writes it). */
const copyToken = 'endpoint-copies-1';

async function agentWith(
  shadows: unknown[],
  capture: Record<string, unknown> = { enabled: false },
  flags: string[] = [],
  token = copyToken,
): Promise<TestAgent> {
  const a = await startTestAgent(serving.url, { enabled: false }, { flags });
  const withDestination = capture.enabled ? { destination: pathToFileURL(a.captureDir).href, ...capture } : capture;
  a.writeConfig(JSON.stringify({ capture: withDestination, shadows, copyToken: token }));
  await a.agent.reload();
  return a;
}

const rowsOf = (i: number) => ({ instances: [[i, 1.5, 2.25, 0.5]] });
const post = (url: string, i: number, headers: Record<string, string> = {}) =>
  send(url, {
    headers: { 'content-type': 'application/json', 'x-ml-inference-id': `req-${i}`, ...headers },
    body: JSON.stringify(rowsOf(i)),
  });

async function shadowStatus(a: TestAgent): Promise<ShadowStatus[]> {
  const r = await send(a.admin, { method: 'GET', path: '/-/agent/status' });
  return (JSON.parse(r.body.toString()) as { shadows: ShadowStatus[] }).shadows;
}

/** The status once every mirrored request of `n` has been recorded. */
const settled = (a: TestAgent, n: number) =>
  waitFor(`${n} mirrored requests recorded`, 10_000, async () => {
    const s = await shadowStatus(a);
    const done = s.every((x) => x.sinceStart.requests + x.dropped + x.skipped >= n && x.inFlight === 0);
    return done ? s : undefined;
  });

describe('shadows mirrored by the agent', () => {
  it('reports exactly the share of predictions the shadow shares, over 600 requests, for two shadows at once', async () => {
    const quarter = await classifier({ disagreeEvery: 4 });
    const same = await classifier();
    closers.push(
      () => quarter.close(),
      () => same.close(),
    );
    agent = await agentWith([
      shadowOf('quarter', quarter.url, { maxInFlight: 1000 }),
      shadowOf('same', same.url, { maxInFlight: 1000 }),
    ]);
    const n = 600;
    const answers = await inParallel(n, 16, (i) => post(agent!.url, i));
    // The client gets the serving model's answers, whatever the shadows say.
    for (const [i, a] of answers.entries()) {
      expect(a.status).toBe(200);
      expect(JSON.parse(a.body.toString())).toEqual({ predictions: [(i + 1 + 2) % 3] });
    }
    const [q, s] = await settled(agent, n);
    expect(q.sinceStart).toMatchObject({ requests: n, compared: n, predictions: n, agreeing: n * 0.75 });
    expect(q.sinceStart.agreement).toBe(0.75);
    expect(s.sinceStart).toMatchObject({ requests: n, compared: n, agreement: 1 });
    expect(q.window.requests).toBe(n);
    expect(q.sinceStart.shadow.errors).toBe(0);
    expect(q.sinceStart.shadow.latencyP99Ms).toBeGreaterThan(0);
    const metrics = (await send(agent.admin, { method: 'GET', path: '/-/agent/metrics' })).body.toString();
    expect(metrics).toMatch(/ml_agent_shadow_predictions_total\{shadow="quarter",result="agree"[^}]*\} 450\n/);
    expect(metrics).toMatch(/ml_agent_shadow_predictions_total\{shadow="quarter",result="disagree"[^}]*\} 150\n/);
    expect(metrics).toMatch(/ml_agent_shadow_requests_total\{shadow="same",result="compared"[^}]*\} 600\n/);
  });

  it("under an agreement check, the copy's target is the serving version: its answer is the reference, and its errors are the serving side's", async () => {
    // The agent's model is the new version (110); the copies go to the serving version (100, then 500).
    const fixed = (value: number, failsOnAsk: boolean) =>
      listenOn((req, res) => {
        req.resume();
        req.on('end', () => {
          const status = failsOnAsk ? Number(req.headers['x-status'] ?? 200) : 200;
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ predictions: [value] }));
        });
      });
    const candidate = await fixed(110, false);
    const servingVersion = await fixed(100, true);
    closers.push(
      () => candidate.close(),
      () => servingVersion.close(),
    );
    const compare = { path: '$.predictions', kind: 'numbers', relativeTolerance: 0.095 };
    // |110 - 100| = 10: within 9.5% of 110 (the agent's own answer), not of 100 (the serving version's).
    const a = await startTestAgent(candidate.url, { enabled: false });
    agent = a;
    a.writeConfig(
      JSON.stringify({
        capture: { enabled: false },
        shadows: [
          { name: 'rollout:agree:iris-1', url: servingVersion.url, percent: 100, compare, reference: 'copy' },
          { name: 'as-shadow', url: servingVersion.url, percent: 100, compare },
        ],
      }),
    );
    await a.agent.reload();
    for (let i = 0; i < 20; i++) expect((await post(a.url, i)).status).toBe(200);
    const [gate, shadow] = await settled(a, 20);
    expect(gate.sinceStart).toMatchObject({ compared: 20, predictions: 20, agreement: 0 });
    expect(shadow.sinceStart).toMatchObject({ compared: 20, predictions: 20, agreement: 1 });
    // The serving version failing: the serving side's errors, nothing compared; the client still gets 200.
    for (let i = 0; i < 10; i++) expect((await post(a.url, i, { 'x-status': '500' })).status).toBe(200);
    const [after] = await settled(a, 30);
    expect(after.sinceStart).toMatchObject({ requests: 30, compared: 20 });
    expect(after.sinceStart.serving.errors).toBe(10);
    expect(after.sinceStart.shadow.errors).toBe(0);
  });

  it('mirrors percent of the requests, within the binomial 99.9% interval, with the method, path, query and headers of each', async () => {
    const seen: string[] = [];
    const shadow = await classifier({ seen });
    closers.push(() => shadow.close());
    agent = await agentWith([shadowOf('s', shadow.url, { percent: 20, maxInFlight: 1000 })]);
    const n = 1500;
    await inParallel(n, 16, (i) =>
      send(agent!.url, {
        path: `/v1/predict?row=${i}`,
        // What the client accepts is the model's business: a copy asks for a plain answer, to compare it.
        headers: { 'content-type': 'application/json', 'x-ml-inference-id': `req-${i}`, 'accept-encoding': 'gzip' },
        body: JSON.stringify(rowsOf(i)),
      }),
    );
    // The copies leave once the client has its answer: the count is read when it no longer moves.
    let last = -1;
    const s = await waitFor('the copies answered', 10_000, async () => {
      const [x] = await shadowStatus(agent!);
      const still = x.inFlight === 0 && x.sinceStart.requests === last;
      last = x.sinceStart.requests;
      if (!still) await new Promise((r) => setTimeout(r, 100));
      return still ? x : undefined;
    });
    const [low, high] = binomialInterval(0.2, n);
    expect(s.sinceStart.requests).toBe(seen.length);
    expect(seen.length).toBeGreaterThanOrEqual(low * n);
    expect(seen.length).toBeLessThanOrEqual(high * n);
    for (const line of seen) expect(line).toMatch(/^POST \/v1\/predict\?row=(\d+) req-\1 -$/);
  });

  it('a shadow that answers 500, hangs or is gone: every client answer is 200 and not slower, and the shadow errors are counted', async () => {
    const failing = await listenOn((_req, res) => {
      res.writeHead(500);
      res.end('broken');
    });
    const hanging = await listenOn(() => {});
    const gone = await listenOn(() => {});
    await gone.close();
    closers.push(
      () => failing.close(),
      () => hanging.close(),
    );
    agent = await agentWith([
      shadowOf('failing', failing.url, { maxInFlight: 1000 }),
      shadowOf('hanging', hanging.url, { timeoutMs: 5000, maxInFlight: 1000 }),
      shadowOf('gone', gone.url, { maxInFlight: 1000 }),
    ]);
    const n = 300;
    const answers = await inParallel(n, 8, (i) => post(agent!.url, i));
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    // The model answers at once; a client that waited for a shadow would wait 5 s for the hanging one.
    const worst = Math.max(...answers.map((a) => a.ms));
    expect(worst, `the slowest of ${n} answers took ${worst.toFixed(1)} ms`).toBeLessThan(2500);
    const status = await settled(agent, n);
    const by = new Map(status.map((s) => [s.name, s.sinceStart]));
    for (const name of ['failing', 'hanging']) {
      expect(by.get(name), name).toMatchObject({ requests: n, compared: 0, shadow: { errors: n, errorRate: 1 } });
      expect(by.get(name)!.serving.errors, name).toBe(0);
    }
    expect(by.get('hanging')!.shadow.latencyP50Ms).toBeGreaterThanOrEqual(5000);
    // The gone one: each copy sent was refused, an error; the agent backed off after the first
    // refusals, and the requests of its back-off are counted as dropped.
    const goneStatus = status.find((x) => x.name === 'gone')!;
    expect(goneStatus.sinceStart).toMatchObject({ compared: 0, shadow: { errorRate: 1 } });
    expect(goneStatus.sinceStart.shadow.errors).toBe(goneStatus.sinceStart.requests);
    expect(goneStatus.sinceStart.requests + goneStatus.dropped).toBe(n);
    expect(goneStatus.sinceStart.requests, JSON.stringify(goneStatus.sinceStart)).toBeLessThan(n / 2);
  }, 30_000);

  it('backs off from a shadow that refuses connections, and mirrors to it again once it listens', async () => {
    const gone = await listenOn(() => {});
    await gone.close();
    agent = await agentWith([shadowOf('back', gone.url, { maxInFlight: 1000 })]);
    const n = 200;
    const answers = await inParallel(n, 8, (i) => post(agent!.url, i));
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    const [refused] = await settled(agent, n);
    expect(refused.dropped).toBeGreaterThan(0);
    expect(refused.sinceStart.requests).toBe(refused.sinceStart.shadow.errors);
    // The shadow listens again at the same address: within the longest back-off (5 s), the agent's
    // copies reach it and are compared.
    const back = await classifier({ port: gone.port });
    closers.push(() => back.close());
    let i = n;
    const compared = await waitFor('a copy compared after the shadow came back', 15_000, async () => {
      await post(agent!.url, i++);
      const [s] = await shadowStatus(agent!);
      return s.sinceStart.compared > 0 ? s : undefined;
    });
    expect(compared.sinceStart.shadow.errors).toBe(refused.sinceStart.shadow.errors);
  }, 30_000);

  it('sends a copy again, once, when the shadow closed the kept-alive connection it went out on', async () => {
    // A shadow that closes a connection as the next request arrives on it, without answering.
    const closing = await listenOn((req, res) => {
      const socket = req.socket as typeof req.socket & { answered?: boolean };
      if (socket.answered) {
        socket.destroy();
        return;
      }
      socket.answered = true;
      req.resume();
      req.on('end', () => res.end('{"predictions":[0]}'));
    });
    closers.push(() => closing.close());
    agent = await agentWith([shadowOf('closing', closing.url, { compare: { path: '$' } })]);
    const n = 40;
    for (let i = 0; i < n; i++) {
      await post(agent.url, i);
      await waitFor('the copy answered', 5000, async () =>
        (await shadowStatus(agent!))[0].sinceStart.requests === i + 1 ? true : undefined,
      );
    }
    const [s] = await shadowStatus(agent);
    expect(s.sinceStart).toMatchObject({ requests: n, shadow: { errors: 0 } });
  });

  it('does not mirror past maxInFlight copies, nor compare a body or answer larger than it keeps or an encoded answer, and counts them', async () => {
    const slow = await listenOn((req, res) => {
      req.resume();
      setTimeout(() => res.end('{"predictions":[0]}'), 300);
    });
    closers.push(() => slow.close());
    agent = await agentWith([shadowOf('slow', slow.url, { maxInFlight: 4 })]);
    const n = 40;
    const answers = await inParallel(n, 40, (i) => post(agent!.url, i));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    await waitFor('the copies answered', 5000, async () =>
      (await shadowStatus(agent!))[0].inFlight === 0 ? true : undefined,
    );
    const big = await send(agent.url, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instances: [[1, 2, 3]], padding: 'x'.repeat(1_100_000) }),
    });
    expect(big.status).toBe(200);
    const [s] = await settled(agent, n + 1);
    expect(s.skipped).toBe(1);
    expect(s.sinceStart.requests).toBeGreaterThanOrEqual(4);
    expect(s.sinceStart.requests + s.dropped).toBe(n);
    expect(s.dropped).toBeGreaterThan(0);

    // A model whose answer is encoded (the client asked for it): passed through, not compared.
    const encoded = await listenOn((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'br' });
      res.end('not really brotli');
    });
    closers.push(() => encoded.close());
    const other = await startTestAgent(encoded.url, { enabled: false });
    closers.push(() => other.dispose());
    other.writeConfig(JSON.stringify({ capture: { enabled: false }, shadows: [shadowOf('slow', slow.url)] }));
    await other.agent.reload();
    const answer = await post(other.url, 1, { 'accept-encoding': 'br' });
    expect(answer).toMatchObject({ status: 200, headers: { 'content-encoding': 'br' } });
    expect(answer.body.toString()).toBe('not really brotli');
    const [e] = await settled(other, 1);
    expect(e).toMatchObject({ skipped: 1, sinceStart: { requests: 0 } });
  });

  it('a captured request that was mirrored has one record with both answers and whether they agreed', async () => {
    const half = await classifier({ disagreeEvery: 2 });
    closers.push(() => half.close());
    agent = await agentWith([shadowOf('half', half.url)], { enabled: true, samplingPercent: 100 });
    const n = 50;
    await inParallel(n, 4, (i) => post(agent!.url, i));
    await settled(agent, n);
    await agent.stop();
    const records = agent.records();
    expect(records).toHaveLength(n);
    for (const r of records) {
      const i = Number(r.eventMetadata.inferenceId!.slice('req-'.length));
      const [shadow] = r.mlOperator.shadows!;
      expect(shadow).toMatchObject({ variant: 'half', status: 200, agreed: i % 2 !== 0 });
      const label = (i + 1 + 2) % 3;
      expect(JSON.parse(dataBytes(shadow.endpointOutput).toString())).toEqual({
        predictions: [i % 2 === 0 ? (label + 1) % 3 : label],
      });
      expect(JSON.parse(dataBytes(r.captureData.endpointOutput!).toString())).toEqual({ predictions: [label] });
    }
  });

  it('a copy another agent sent is captured as one (copyOf) and mirrored no further', async () => {
    const onward = await classifier();
    closers.push(() => onward.close());
    // The receiving agent (a shadow's, or the serving version's under an agreement check) captures everything and has a shadow of its own.
    const receiver = await agentWith([shadowOf('onward', onward.url)], { enabled: true, samplingPercent: 100 });
    closers.push(() => receiver.dispose());
    agent = await agentWith([shadowOf('to-receiver', receiver.url)]);
    const n = 10;
    for (let i = 0; i < n; i++) expect((await post(agent.url, i)).status).toBe(200);
    await settled(agent, n);
    const [fromReceiver] = await shadowStatus(receiver);
    expect(fromReceiver.sinceStart.requests + fromReceiver.dropped + fromReceiver.skipped).toBe(0);
    // Nor are the copies counted as its clients' requests (the errorRate and latencyP99 checks from Agents).
    const counted = JSON.parse(
      (await send(receiver.admin, { method: 'GET', path: '/-/agent/status?window=60' })).body.toString(),
    ) as { requests: { requests: Record<string, number> } };
    expect(Object.values(counted.requests.requests).reduce((a, b) => a + b, 0)).toBe(0);
    const sender = JSON.parse(
      (await send(agent.admin, { method: 'GET', path: '/-/agent/status?window=60' })).body.toString(),
    ) as { requests: { requests: Record<string, number> } };
    expect(sender.requests.requests['2xx']).toBe(n);
    await receiver.stop();
    const records = receiver.records();
    expect(records).toHaveLength(n);
    expect(records.map((r) => r.mlOperator.copyOf)).toEqual(Array(n).fill('to-receiver'));
  });

  it("a client's request carrying the copy header, or a copy from another endpoint's agent, is a client's request: mirrored and captured as one", async () => {
    const onward = await classifier();
    closers.push(() => onward.close());
    const receiver = await agentWith([shadowOf('onward', onward.url)], { enabled: true, samplingPercent: 100 });
    closers.push(() => receiver.dispose());
    // Another endpoint's agent: its copies carry another token.
    const stranger = await agentWith([shadowOf('to-receiver', receiver.url)], undefined, [], 'other-endpoint-2');
    closers.push(() => stranger.dispose());
    const n = 10;
    for (let i = 0; i < n; i++) {
      expect((await post(receiver.url, i, { 'x-ml-operator-copy': 'to-receiver' })).status).toBe(200);
      expect((await post(receiver.url, n + i, { 'x-ml-operator-copy': `${copyToken}-guess to-receiver` })).status).toBe(
        200,
      );
      expect((await post(stranger.url, 2 * n + i)).status).toBe(200);
    }
    await settled(stranger, n);
    await settled(receiver, 3 * n);
    await receiver.stop();
    const records = receiver.records();
    expect(records).toHaveLength(3 * n);
    expect(records.filter((r) => r.mlOperator.copyOf !== undefined)).toEqual([]);
  });

  it('keeps a shadow’s figures when only its share changes, starts them over when its comparison changes, and keeps the last good config on a bad one', async () => {
    const shadow = await classifier({ disagreeEvery: 2 });
    closers.push(() => shadow.close());
    agent = await agentWith([shadowOf('s', shadow.url)]);
    await inParallel(20, 4, (i) => post(agent!.url, i));
    await settled(agent, 20);
    const write = async (shadows: unknown[]) => {
      agent!.writeConfig(JSON.stringify({ capture: { enabled: false }, shadows }));
      await agent!.agent.reload();
    };
    await write([shadowOf('s', shadow.url, { percent: 50 })]);
    expect((await shadowStatus(agent))[0]).toMatchObject({ percent: 50, sinceStart: { requests: 20 } });
    await write([shadowOf('s', shadow.url, { compare: { path: '$.predictions[0]' } })]);
    expect((await shadowStatus(agent))[0]).toMatchObject({ percent: 100, sinceStart: { requests: 0 } });
    await write([shadowOf('s', shadow.url, { compare: { path: 'predictions' } })]);
    const status = JSON.parse(
      (await send(agent.admin, { method: 'GET', path: '/-/agent/status' })).body.toString(),
    ) as {
      capture: { configError: string };
      shadows: ShadowStatus[];
    };
    expect(status.capture.configError).toContain(
      'shadows[0].compare: the prediction path "predictions" does not start with $',
    );
    // The last good config (the path $.predictions[0]) stays in use.
    expect(status.shadows[0]).toMatchObject({ percent: 100, sinceStart: { requests: 0 } });
    await post(agent.url, 1);
    await settled(agent, 1);
  });

  it('on SIGTERM, waits for the copies in flight before the last records are written', async () => {
    const held: (() => void)[] = [];
    const slow = await listenOn((req, res) => {
      req.resume();
      held.push(() => res.end('{"predictions":[2]}'));
    });
    closers.push(() => slow.close());
    agent = await agentWith([shadowOf('slow', slow.url)], { enabled: true, samplingPercent: 100 });
    const n = 10;
    await inParallel(n, 10, (i) => post(agent!.url, i));
    await waitFor(`${n} copies at the shadow`, 5000, async () => (held.length === n ? true : undefined));
    const stopped = agent.stop();
    for (const answer of held) answer();
    await stopped;
    const records = agent.records();
    expect(records).toHaveLength(n);
    expect(records.every((r) => r.mlOperator.shadows?.[0].status === 200)).toBe(true);
  });

  it('on SIGTERM, ends copies the shadow never answers within half the flush timeout, and writes their records', async () => {
    const hanging = await listenOn(() => {});
    closers.push(() => hanging.close());
    agent = await agentWith([shadowOf('hanging', hanging.url)], { enabled: true, samplingPercent: 100 }, [
      '--flush-timeout-seconds=2',
    ]);
    const n = 10;
    await inParallel(n, 10, (i) => post(agent!.url, i));
    await waitFor(`${n} copies in flight`, 5000, async () =>
      (await shadowStatus(agent!))[0].inFlight === n ? true : undefined,
    );
    const started = performance.now();
    const capture = agent.agent.capture;
    await agent.stop();
    // The shadow's 10 s timeout would hold the stop for 10 s.
    expect(performance.now() - started).toBeLessThan(5000);
    const records = agent.records();
    expect(records).toHaveLength(n);
    expect(records.every((r) => r.mlOperator.shadows?.[0].status === 0)).toBe(true);
    expect(capture.status()).toMatchObject({ written: n, dropped: 0 });
  });
});
