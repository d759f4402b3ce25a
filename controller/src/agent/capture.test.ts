// Data Capture through the agent into a directory (a mounted claim): what a reader of the files gets
// is exactly what the clients sent and got, in the share asked for, and the files are laid out and
// rotated as docs/agent.md says.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { binomialInterval } from '../../../ci/traffic/load.ts';
import { waitFor } from '../../../ci/wait.ts';
import { dataBytes } from './record.ts';
import {
  captureFiles,
  inParallel,
  send,
  startModel,
  startTestAgent,
  type Answer,
  type Listening,
  type TestAgent,
} from './testing/harness.ts';

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

/** A request body of one of four kinds: JSON, CSV, binary, and "JSON" that is not valid UTF-8. */
function body(i: number): { type: string; bytes: Buffer } {
  switch (i % 4) {
    case 0:
      return {
        type: 'application/json',
        bytes: Buffer.from(JSON.stringify({ id: i, features: [i, 1.5, 'ü "quoted" \n'] })),
      };
    case 1:
      return { type: 'text/csv; charset=utf-8', bytes: Buffer.from(`${i},3.25,"a,b"\n${i + 1},0,x\n`) };
    case 2:
      return { type: 'application/x-npy', bytes: randomBytes(64 + (i % 50)) };
    default:
      return {
        type: 'application/json',
        bytes: Buffer.concat([Buffer.from('{"b":"'), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from('"}')]),
      };
  }
}

describe('capture to a directory', () => {
  it('captures samplingPercent 25 of 2,000 requests, within the binomial 99.9% interval, each record byte for byte what its client sent and got', async () => {
    agent = await startTestAgent(model.url, {
      enabled: true,
      samplingPercent: 25,
      rotation: { maxBytes: 200_000, maxSeconds: 60 },
    });
    const n = 2000;
    const sent = new Map<string, { input: Buffer; inputType: string; answer: Answer }>();
    await inParallel(n, 16, async (i) => {
      const { type, bytes } = body(i);
      const id = `req-${i}`;
      const answer = await send(agent!.url, {
        headers: { 'content-type': type, 'x-ml-inference-id': id },
        body: bytes,
      });
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual(Buffer.from(Buffer.from(bytes).reverse()));
      sent.set(id, { input: bytes, inputType: type, answer });
    });
    const capture = agent.agent.capture;
    await agent.stop();
    const records = agent.records();
    const [low, high] = binomialInterval(0.25, n);
    process.stderr.write(
      `capture: ${records.length} records of ${n} requests at 25% (99.9% interval ${Math.ceil(low * n)}-${Math.floor(high * n)}); ${captureFiles(agent.captureDir).length} files\n`,
    );
    expect(records.length).toBeGreaterThanOrEqual(low * n);
    expect(records.length).toBeLessThanOrEqual(high * n);
    expect(capture.status()).toMatchObject({ written: records.length, dropped: 0, healthy: true });
    const ids = new Set<string>();
    for (const r of records) {
      const id = r.eventMetadata.inferenceId!;
      ids.add(id);
      const s = sent.get(id)!;
      expect(s, id).toBeDefined();
      const input = r.captureData.endpointInput!;
      const output = r.captureData.endpointOutput!;
      expect(dataBytes(input).equals(s.input), id).toBe(true);
      expect(dataBytes(output).equals(s.answer.body), id).toBe(true);
      expect(input.observedContentType).toBe(s.inputType);
      expect(input.mode).toBe('INPUT');
      expect(output.mode).toBe('OUTPUT');
      const i = Number(id.slice(4));
      expect(input.encoding, id).toBe(['JSON', 'CSV', 'BASE64', 'BASE64'][i % 4]);
      expect(r.eventVersion).toBe('0');
      expect(r.mlOperator).toMatchObject({
        endpoint: 'titanic',
        variant: 'a',
        modelVersion: 'v123',
        pod: 'titanic-a-pod-1',
        status: 200,
        truncated: false,
      });
      expect(r.mlOperator.latencyMs).toBeGreaterThan(0);
    }
    expect(ids.size).toBe(records.length);
  }, 60_000);

  it('lays files out as <namespace>/<endpoint>/<variant>/<yyyy>/<mm>/<dd>/<hh>/<pod>-<n>.jsonl and rotates them by size', async () => {
    agent = await startTestAgent(model.url, {
      enabled: true,
      samplingPercent: 100,
      rotation: { maxBytes: 2000, maxSeconds: 3600 },
    });
    const before = new Date();
    await inParallel(60, 4, (i) =>
      send(agent!.url, {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ i, pad: 'x'.repeat(100) }),
      }),
    );
    await agent.stop();
    const files = captureFiles(agent.captureDir);
    const hour = `${before.getUTCFullYear()}/${String(before.getUTCMonth() + 1).padStart(2, '0')}/${String(before.getUTCDate()).padStart(2, '0')}/${String(before.getUTCHours()).padStart(2, '0')}`;
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(f).toMatch(new RegExp(`^ns1/titanic/a/${hour}/titanic-a-pod-1-\\d+\\.jsonl$`));
    const numbers = files.map((f) => Number(/-(\d+)\.jsonl$/.exec(f)![1]));
    expect(new Set(numbers).size).toBe(files.length);
    expect(agent.records()).toHaveLength(60);
  });

  it('rotates by time: a file is written once rotation.maxSeconds has passed, without more traffic', async () => {
    agent = await startTestAgent(model.url, {
      enabled: true,
      samplingPercent: 100,
      rotation: { maxBytes: 10_000_000, maxSeconds: 1 },
    });
    await send(agent.url, {
      headers: { 'content-type': 'application/json', 'x-ml-inference-id': 'only' },
      body: '{"a":1}',
    });
    const records = await waitFor('the file of one record', 10_000, async () =>
      agent!.records().length ? agent!.records() : undefined,
    );
    expect(records.map((r) => r.eventMetadata.inferenceId)).toEqual(['only']);
  });

  it('captures only the input when captureOptions is ["Input"], and keeps text types it is told to', async () => {
    agent = await startTestAgent(model.url, {
      enabled: true,
      samplingPercent: 100,
      captureOptions: ['Input'],
      textContentTypes: ['text/plain'],
    });
    await send(agent.url, { headers: { 'content-type': 'text/plain' }, body: 'hello' });
    await send(agent.url, { headers: { 'content-type': 'application/json' }, body: '{"x":1}' });
    await agent.stop();
    const records = agent.records();
    expect(records.map((r) => Object.keys(r.captureData))).toEqual([['endpointInput'], ['endpointInput']]);
    expect(records.map((r) => [r.captureData.endpointInput!.encoding, r.captureData.endpointInput!.data])).toEqual([
      ['CSV', 'hello'],
      ['BASE64', Buffer.from('{"x":1}').toString('base64')],
    ]);
  });
});
