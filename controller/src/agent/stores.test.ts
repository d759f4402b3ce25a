// Capture into real object stores on loopback (ci/object-stores.ts): MinIO for s3://, fake-gcs-server
// for gs://, Azurite for azure://, with the credentials and endpoints the fetcher reads from the same
// environment variables. A missing bucket is reported, and capture recovers once it exists.
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { Storage } from '@google-cloud/storage';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  azuriteAccount,
  minioRoot,
  startAzurite,
  startFakeGcs,
  startMinio,
  type RunningStore,
} from '../../../ci/object-stores.ts';
import { waitFor } from '../../../ci/wait.ts';
import type { CaptureStatus } from './capture.ts';
import { dataBytes, type CaptureRecord } from './record.ts';
import { send, startModel, startTestAgent, type Listening, type TestAgent } from './testing/harness.ts';

process.env.AWS_EC2_METADATA_DISABLED = 'true';

let model: Listening;
let minio: RunningStore;
let gcs: RunningStore;
let azurite: RunningStore;
let s3: S3Client;
let agent: TestAgent | undefined;
beforeAll(async () => {
  // Each handle is kept as its store starts, and every start is waited for, so that afterAll stops
  // every store that started when another's start fails (a hook that times out still leaves one).
  const started = await Promise.allSettled([
    startModel().then((m) => (model = m)),
    startMinio().then((m) => (minio = m)),
    startFakeGcs({}).then((g) => (gcs = g)),
    startAzurite().then((a) => (azurite = a)),
  ]);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  s3 = new S3Client({
    endpoint: minio.url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: minioRoot.user, secretAccessKey: minioRoot.password },
  });
  await s3.send(new CreateBucketCommand({ Bucket: 'capture' }));
}, 120_000);
afterAll(async () => {
  s3?.destroy();
  await Promise.all([model?.close(), minio?.stop(), gcs?.stop(), azurite?.stop()]);
});
afterEach(async () => {
  await agent?.dispose();
  agent = undefined;
});

const status = async (a: TestAgent) =>
  ((await (await fetch(`${a.admin}/-/agent/status`)).json()) as { capture: CaptureStatus }).capture;
const parse = (texts: string[]) =>
  texts.flatMap((t) =>
    t
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as CaptureRecord),
  );
const layout = /^prefix\/one\/ns1\/titanic\/a\/\d{4}\/\d{2}\/\d{2}\/\d{2}\/titanic-a-pod-1-\d+\.jsonl$/;

/** Sends 10 captured requests, stops the agent (flushing), and checks the records against them. */
async function roundTrip(a: TestAgent, read: () => Promise<{ keys: string[]; texts: string[] }>): Promise<void> {
  const sent: string[] = [];
  for (let i = 0; i < 10; i++) {
    const body = JSON.stringify({ i, text: 'ü' });
    sent.push(body);
    expect(
      (await send(a.url, { headers: { 'content-type': 'application/json', 'x-ml-inference-id': `s${i}` }, body }))
        .status,
    ).toBe(200);
  }
  await a.stop();
  const { keys, texts } = await read();
  for (const key of keys) expect(key).toMatch(layout);
  const records = parse(texts);
  expect(records).toHaveLength(10);
  for (const r of records) {
    const i = Number(r.eventMetadata.inferenceId!.slice(1));
    expect(dataBytes(r.captureData.endpointInput!).toString()).toBe(sent[i]);
    expect(dataBytes(r.captureData.endpointOutput!).equals(Buffer.from(Buffer.from(sent[i]).reverse()))).toBe(true);
  }
}

describe('capture into object stores', () => {
  it('s3:// (MinIO) with AWS keys and AWS_ENDPOINT_URL', async () => {
    agent = await startTestAgent(
      model.url,
      { enabled: true, samplingPercent: 100, destination: 's3://capture/prefix/one' },
      {
        env: {
          AWS_ACCESS_KEY_ID: minioRoot.user,
          AWS_SECRET_ACCESS_KEY: minioRoot.password,
          AWS_ENDPOINT_URL: minio.url,
          AWS_REGION: 'us-east-1',
        },
      },
    );
    await roundTrip(agent, async () => {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'capture', Prefix: 'prefix/one/' }));
      const keys = (listed.Contents ?? []).map((o) => o.Key!);
      const texts = await Promise.all(
        keys.map(async (Key) =>
          (await s3.send(new GetObjectCommand({ Bucket: 'capture', Key }))).Body!.transformToString(),
        ),
      );
      return { keys, texts };
    });
  }, 60_000);

  it('s3:// reports refused keys and a missing bucket with the destination, and recovers once the bucket exists', async () => {
    agent = await startTestAgent(
      model.url,
      { enabled: true, samplingPercent: 100, destination: 's3://not-yet/prefix/one' },
      {
        env: {
          AWS_ACCESS_KEY_ID: minioRoot.user,
          AWS_SECRET_ACCESS_KEY: 'wrong-secret-0123456789',
          AWS_ENDPOINT_URL: minio.url,
          AWS_REGION: 'us-east-1',
        },
      },
    );
    const refused = await waitFor('the refusal', 20_000, async () => (await status(agent!)).error ?? undefined);
    expect(refused).toMatch(
      /^403 Forbidden checking the bucket of s3:\/\/not-yet\/prefix\/one .*: check the capture credentials/,
    );
    await agent.dispose();
    agent = await startTestAgent(
      model.url,
      {
        enabled: true,
        samplingPercent: 100,
        destination: 's3://not-yet/prefix/one',
        rotation: { maxBytes: 1_000_000, maxSeconds: 1 },
      },
      {
        env: {
          AWS_ACCESS_KEY_ID: minioRoot.user,
          AWS_SECRET_ACCESS_KEY: minioRoot.password,
          AWS_ENDPOINT_URL: minio.url,
          AWS_REGION: 'us-east-1',
        },
      },
    );
    const missing = await waitFor('the missing bucket', 20_000, async () => (await status(agent!)).error ?? undefined);
    expect(missing).toMatch(
      /^404 Not Found checking the bucket of s3:\/\/not-yet\/prefix\/one .*: check that the bucket \(or container\) of the destination exists/,
    );
    await send(agent.url, {
      headers: { 'content-type': 'application/json', 'x-ml-inference-id': 'waiting' },
      body: '{}',
    });
    await s3.send(new CreateBucketCommand({ Bucket: 'not-yet' }));
    const healthy = await waitFor('recovery', 60_000, async () => {
      const s = await status(agent!);
      return s.healthy && s.written === 1 ? s : undefined;
    });
    expect(healthy.error).toBeNull();
  }, 120_000);

  it('gs:// (fake-gcs-server) through STORAGE_EMULATOR_HOST', async () => {
    const storage = new Storage({ apiEndpoint: gcs.url, projectId: 'test' });
    await storage.createBucket('capture-gcs');
    agent = await startTestAgent(
      model.url,
      { enabled: true, samplingPercent: 100, destination: 'gs://capture-gcs/prefix/one' },
      { env: { STORAGE_EMULATOR_HOST: gcs.url } },
    );
    await roundTrip(agent, async () => {
      const [files] = await storage.bucket('capture-gcs').getFiles({ prefix: 'prefix/one/' });
      return {
        keys: files.map((f) => f.name),
        texts: await Promise.all(files.map(async (f) => (await f.download())[0].toString())),
      };
    });
  }, 60_000);

  it('azure:// (Azurite) with the account key and AZURE_STORAGE_BLOB_ENDPOINT', async () => {
    const endpoint = `${azurite.url}/${azuriteAccount.name}`;
    const container = BlobServiceClient.fromConnectionString(
      `DefaultEndpointsProtocol=http;AccountName=${azuriteAccount.name};AccountKey=${azuriteAccount.key};BlobEndpoint=${endpoint};`,
    ).getContainerClient('capture');
    await container.create();
    agent = await startTestAgent(
      model.url,
      { enabled: true, samplingPercent: 100, destination: `azure://${azuriteAccount.name}/capture/prefix/one` },
      {
        env: { AZURE_STORAGE_KEY: azuriteAccount.key, AZURE_STORAGE_BLOB_ENDPOINT: endpoint },
      },
    );
    await roundTrip(agent, async () => {
      const keys: string[] = [];
      for await (const b of container.listBlobsFlat({ prefix: 'prefix/one/' })) keys.push(b.name);
      const texts = await Promise.all(
        keys.map(async (k) => (await container.getBlobClient(k).downloadToBuffer()).toString()),
      );
      return { keys, texts };
    });
  }, 60_000);
});
