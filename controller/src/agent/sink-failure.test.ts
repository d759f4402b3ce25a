// A sink that fails never hurts serving: requests are answered as fast as ever, records wait in the
// bounded buffer and are dropped (and counted) past it, status says what fails, and capture recovers
// by itself when the sink comes back. And the config file: re-read, a bad one keeps the last good.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../../ci/wait.ts';
import type { CaptureStatus } from './capture.ts';
import { inParallel, send, startModel, startTestAgent, type Listening, type TestAgent } from './testing/harness.ts';

let model: Listening;
let agent: TestAgent | undefined;
beforeAll(async () => {
  model = await startModel();
});
afterAll(() => model.close());
afterEach(async () => {
  await agent?.dispose();
  agent = undefined;
});

const status = async (a: TestAgent) =>
  ((await (await fetch(`${a.admin}/-/agent/status`)).json()) as { capture: CaptureStatus }).capture;
const keys = {
  AWS_ACCESS_KEY_ID: 'capture-key',
  AWS_SECRET_ACCESS_KEY: 'capture-secret-0123456789',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
};

/** 400 requests, 8 at a time, every one captured; returns the median and the slowest answer in ms. */
async function load(a: TestAgent, tag: string): Promise<{ median: number; worst: number }> {
  const answers = await inParallel(400, 8, (i) =>
    send(a.url, {
      headers: { 'content-type': 'application/json', 'x-ml-inference-id': `${tag}-${i}` },
      body: JSON.stringify({ i, pad: 'p'.repeat(200) }),
    }),
  );
  expect(answers.every((x) => x.status === 200)).toBe(true);
  const ms = answers.map((x) => x.ms).sort((x, y) => x - y);
  return { median: ms[200], worst: ms.at(-1)! };
}

describe('a failing sink', () => {
  it.each([
    ['hangs (accepts connections, never answers)', true],
    ['refuses connections', false],
  ])(
    'that %s: every request answered at once, records dropped and counted past the buffer, status names the failure',
    async (_what, hang) => {
      const sockets: net.Socket[] = [];
      const silent = net.createServer((s) => sockets.push(s));
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const port = (silent.address() as net.AddressInfo).port;
      if (!hang) await new Promise((r) => silent.close(r));
      agent = await startTestAgent(
        model.url,
        {
          enabled: true,
          samplingPercent: 100,
          destination: 's3://capture/records',
          rotation: { maxBytes: 4000, maxSeconds: 1 },
        },
        {
          flags: ['--buffer-bytes=20000', '--flush-timeout-seconds=0.5'],
          env: { ...keys, AWS_ENDPOINT_URL: `http://127.0.0.1:${port}` },
        },
      );
      const { median, worst } = await load(agent, 'fail');
      process.stderr.write(
        `sink that ${_what}: 400 answers, median ${median.toFixed(1)} ms, slowest ${worst.toFixed(1)} ms\n`,
      );
      // Bounded well below the 10 s the sink's client waits for an answer: no request waited for it.
      expect(worst).toBeLessThan(2500);
      const s = await waitFor('the sink reported failing', 30_000, async () => {
        const st = await status(agent!);
        return st.healthy ? undefined : st;
      });
      expect(s.error).toMatch(
        hang
          ? /s3:\/\/capture\/records/
          : /s3:\/\/capture\/records .*ECONNREFUSED.*: the store could not be reached: check the endpoint/,
      );
      expect(s.dropped).toBeGreaterThan(300);
      expect(s.written).toBe(0);
      const metrics = await (await fetch(`${agent.admin}/-/agent/metrics`)).text();
      expect(metrics).toContain(
        `ml_agent_capture_records_total{result="dropped",namespace="ns1",endpoint="titanic",variant="a",version="v123"} ${s.dropped}`,
      );
      for (const socket of sockets) socket.destroy();
      silent.close();
    },
    60_000,
  );

  it('recovers by itself: records taken while the directory could not be written are written once it can, and status turns healthy', async () => {
    agent = await startTestAgent(model.url, {
      enabled: true,
      samplingPercent: 100,
      rotation: { maxBytes: 3000, maxSeconds: 1 },
    });
    // A file where the capture directory should be: nothing can be written under it. The sink's own
    // check may make the directory again between the two steps: then try again.
    await waitFor('a file in place of the capture directory', 10_000, async () => {
      rmSync(agent!.captureDir, { recursive: true, force: true });
      try {
        writeFileSync(agent!.captureDir, 'in the way', { flag: 'wx' });
        return true;
      } catch {
        return undefined;
      }
    });
    for (let i = 0; i < 20; i++)
      await send(agent.url, {
        headers: { 'content-type': 'application/json', 'x-ml-inference-id': `held-${i}` },
        body: `{"i":${i}}`,
      });
    await waitFor('the sink reported failing', 20_000, async () => ((await status(agent!)).healthy ? undefined : true));
    const failing = await status(agent);
    // Whichever came first names the directory: the write of a sealed file, or the sink's own check.
    expect(failing.error).toMatch(/writing .*capture.* failed|cannot write to \S*capture/);
    expect(failing.written).toBe(0);
    rmSync(agent.captureDir);
    mkdirSync(agent.captureDir);
    const healthy = await waitFor('the sink healthy again', 40_000, async () => {
      const st = await status(agent!);
      return st.healthy && st.written === 20 ? st : undefined;
    });
    expect(healthy).toMatchObject({ error: null, dropped: 0 });
    expect(Date.parse(healthy.since)).toBeGreaterThan(Date.parse(failing.since));
    expect(
      agent
        .records()
        .map((r) => r.eventMetadata.inferenceId)
        .sort(),
    ).toEqual(Array.from({ length: 20 }, (_, i) => `held-${i}`).sort());
  }, 60_000);
});

describe('the config file', () => {
  it('is re-read: a new sampling percent applies, a bad file keeps the last good config and says why, capture turns off', async () => {
    agent = await startTestAgent(model.url, {
      enabled: true,
      samplingPercent: 0,
      rotation: { maxBytes: 1_000_000, maxSeconds: 1 },
    });
    const destination = pathToFileURL(agent.captureDir).href;
    const one = (id: string) =>
      send(agent!.url, { headers: { 'content-type': 'application/json', 'x-ml-inference-id': id }, body: '{}' });
    await one('at-0');
    agent.writeConfig({
      enabled: true,
      samplingPercent: 100,
      destination,
      rotation: { maxBytes: 1_000_000, maxSeconds: 1 },
    });
    await waitFor('samplingPercent 100', 5000, async () =>
      (await status(agent!)).samplingPercent === 100 ? true : undefined,
    );
    await one('at-100');
    agent.writeConfig('{"capture": {"enabled": true, "samplingPercent": 150');
    const bad = await waitFor('the config error', 5000, async () => (await status(agent!)).configError ?? undefined);
    expect(bad).toMatch(/config\.json: not JSON: .*; the last good capture config stays in use/);
    agent.writeConfig({ enabled: true, samplingPercent: 150, destination });
    await waitFor('the range error', 5000, async () =>
      (await status(agent!)).configError?.includes('capture.samplingPercent must be a number from 0 to 100, not 150')
        ? true
        : undefined,
    );
    await one('still-100');
    agent.writeConfig({ enabled: false });
    await waitFor('capture off', 5000, async () => ((await status(agent!)).enabled ? undefined : true));
    expect((await status(agent)).configError).toBeNull();
    await one('off');
    await agent.stop();
    expect(
      agent
        .records()
        .map((r) => r.eventMetadata.inferenceId)
        .sort(),
    ).toEqual(['at-100', 'still-100']);
  }, 30_000);
});
