// Data Capture with real components: an endpoint whose config has dataCapture gets the model agent in
// its pods (run from source by the local cluster's pod runtime), real load through the gateway, and
// records read back from the store: a real MinIO (S3), fake-gcs-server (Cloud Storage), Azurite (Azure
// Blob) and a PersistentVolumeClaim. What a user checks: the sampled share, that each record holds
// byte for byte what a client sent and got (matched by x-ml-inference-id), that a store hanging for
// 30 s fails no request and loses no record, that changing the sampling restarts no pod and fails no
// request, that a pod deleted under load loses none of its records, and that a bad destination is
// refused at apply.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { binomialInterval } from '../../ci/traffic/load.ts';
import {
  azuriteAccount,
  minioRoot,
  startAzurite,
  startFakeGcs,
  startMinio,
  type RunningStore,
} from '../../ci/object-stores.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { applyConfig, applyEndpoint, applyModel, getEndpoint, inService, user, waitForEndpoint } from './ml.ts';
import { expectServed } from './served.ts';
import { gatewaySuite, servedModel } from './fixtures.ts';
import { load, printReport, waitForGateway } from './traffic.ts';

const suite = gatewaySuite('data-capture');
const model = servedModel('titanic');
const bucket = 'captures';
const secret = 'capture-store';
let minio: RunningStore;
let s3: S3Client;

interface CaptureRecord {
  captureData: {
    endpointInput?: { data: string; encoding: string; observedContentType: string };
    endpointOutput?: { data: string; encoding: string };
  };
  eventMetadata: { eventId: string; inferenceId?: string; inferenceTime: string };
  eventVersion: string;
  mlOperator: {
    endpoint: string;
    variant: string;
    modelVersion: string;
    pod: string;
    status: number;
    latencyMs: number;
    truncated: boolean;
  };
}

beforeAll(async () => {
  minio = await startMinio({ address: inject('network').hostAddress });
  s3 = new S3Client({
    endpoint: minio.url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: minioRoot.user, secretAccessKey: minioRoot.password },
  });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
}, 120_000);
afterAll(async () => {
  s3?.destroy();
  await minio?.stop();
});

async function storeSecret(namespace: string, name: string, data: Record<string, string>): Promise<void> {
  await user.apply({ group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true }, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace },
    stringData: data,
  } as KubeObject);
}

const minioKeys = () => ({
  AWS_ACCESS_KEY_ID: minioRoot.user,
  AWS_SECRET_ACCESS_KEY: minioRoot.password,
  AWS_ENDPOINT_URL_S3: minio.url,
  AWS_REGION: 'us-east-1',
});

/** The records of JSON Lines files. */
const parseLines = (texts: string[]): CaptureRecord[] =>
  texts.flatMap((text) =>
    text
      .split('\n')
      .filter((line) => line.trim())
      .map((line) => JSON.parse(line) as CaptureRecord),
  );

/** Every record in MinIO under the prefix. */
async function records(prefix: string): Promise<CaptureRecord[]> {
  const texts: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? [])
      texts.push(
        await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }))).Body!.transformToString(),
      );
    token = page.NextContinuationToken;
  } while (token);
  return parseLines(texts);
}

/** The records once the files stop growing (the agents close a file every rotation.maxSeconds). */
async function settledRecords(
  prefix: string,
  rotationSeconds: number,
  read: (prefix: string) => Promise<CaptureRecord[]> = records,
  where = `s3://${bucket}/${prefix}`,
): Promise<CaptureRecord[]> {
  let last = -1;
  return waitFor(`capture files under ${where} to stop growing`, 120_000, async () => {
    const now = await read(prefix);
    const settled = now.length > 0 && now.length === last;
    last = now.length;
    if (!settled) await new Promise((r) => setTimeout(r, (rotationSeconds + 2) * 1000));
    return settled ? now : undefined;
  });
}

const podUids = async (namespace: string, instance: string) =>
  (
    await user.list<KubeObject>(resources.pod, namespace, {
      labelSelector: `ml-operator.dev/model-instance=${instance}`,
    })
  ).items
    .map((p) => p.metadata.uid)
    .sort();

/** Where an endpoint's records go, and how a reader gets them back. */
interface CaptureStore {
  /** The destination's root: records are under `<root>/<namespace>/<endpoint>/<variant>/...`. */
  root: string;
  /** The credentials Secret (the store's keys and endpoint), if the store needs one. */
  secret?: { name: string; data: Record<string, string> };
  /** Every record whose file's key starts with `prefix`, relative to the root. */
  read(prefix: string): Promise<CaptureRecord[]>;
}

const minioStore = (): CaptureStore => ({
  root: `s3://${bucket}/records`,
  secret: { name: secret, data: minioKeys() },
  read: (prefix) => records(`records/${prefix}`),
});

/**
 * An endpoint capturing 25% of 2,000 requests through the gateway into `store`: the count of records
 * inside the binomial 99.9% interval, each byte-equal to what its client sent and got.
 */
async function sampled(name: string, store: CaptureStore): Promise<void> {
  const { namespace } = suite;
  const credentials = store.secret?.name;
  if (store.secret) await storeSecret(namespace, store.secret.name, store.secret.data);
  await applyModel(namespace, name, model(`acme/${name}:1`));
  const dataCapture = {
    samplingPercent: 25,
    destination: store.root,
    ...(credentials ? { credentialsSecret: credentials } : {}),
    rotation: { maxSeconds: 3 },
  };
  await applyConfig(namespace, name, { models: [{ model: name, instances: 2 }], dataCapture });
  await applyEndpoint(namespace, name, { config: name });
  const e = await waitForEndpoint(namespace, name, 'InService', inService, 120_000);
  const instance = e.status!.traffic![0].service;
  await waitForGateway(suite.host(name));

  const sent = new Map<string, string>();
  const run = load(suite.host(name), {
    requests: 2000,
    rate: 40,
    concurrency: 64,
    maxDurationMs: 120_000,
    method: 'POST',
    keepAnswers: true,
    requestFor: (i) => {
      const body = JSON.stringify({
        passenger: i,
        features: [i % 3, (i * 7) % 11, Math.round(Math.random() * 1e6) / 1e3],
      });
      sent.set(`req-${i}`, body);
      return { headers: { 'x-ml-inference-id': `req-${i}` }, body };
    },
  });
  const report = await run.done;
  printReport('2,000 requests, 25% captured', report);

  const prefix = `${namespace}/${name}/${name}/`;
  const found = (await settledRecords(prefix, 3, (p) => store.read(p), `${store.root}/${prefix}`)).filter((r) =>
    r.eventMetadata.inferenceId?.startsWith('req-'),
  );
  const [low, high] = binomialInterval(0.25, 2000).map((p) => p * 2000);
  process.stdout.write(
    `[capture] ${found.length} records of 2000 requests at 25% (99.9% interval ${low.toFixed(0)}..${high.toFixed(0)})\n`,
  );
  expect(found.length).toBeGreaterThanOrEqual(low);
  expect(found.length).toBeLessThanOrEqual(high);
  expect(new Set(found.map((r) => r.eventMetadata.inferenceId)).size).toBe(found.length);
  // A client that gave up (its deadline passed) got no answer to compare with; the record still has the model's.
  const answers = new Map(
    run.samples.filter((s) => s.status === 200).map((s) => [`req-${s.i}`, s.answer?.toString('utf8')]),
  );
  for (const r of found) {
    const id = r.eventMetadata.inferenceId!;
    expect(r.captureData.endpointInput, id).toMatchObject({ encoding: 'JSON', data: sent.get(id) });
    if (answers.has(id)) expect(r.captureData.endpointOutput?.data, id).toBe(answers.get(id));
    expect(r.mlOperator).toMatchObject({ endpoint: name, variant: name, status: 200, truncated: false });
    expect(r.eventVersion).toBe('0');
  }
  expectServed(run, { namespace, backends: [instance] });
  const captured = await waitForEndpoint(
    namespace,
    name,
    'DataCaptured True',
    (x) => x.status?.conditions?.find((c) => c.type === 'DataCaptured')?.status === 'True',
    60_000,
  );
  expect(captured.status!.conditions!.find((c) => c.type === 'DataCaptured')!.message).toContain(store.root);
}

describe('Data Capture to S3 (MinIO)', () => {
  it('keeps 25% of 2,000 requests through the gateway, each record byte-equal to what its client sent and got', async () => {
    await sampled('capture-s3', minioStore());
  }, 400_000);

  it('rides out a store that hangs for 30 s under load: 0 failed requests, DataCaptured False then True, no record lost', async () => {
    const { namespace } = suite;
    const name = 'capture-s3';
    const e = await getEndpoint(namespace, name);
    const instance = e.status!.traffic![0].service;
    const condition = (x: MachineLearningEndpoint) => x.status?.conditions?.find((c) => c.type === 'DataCaptured');
    const run = load(suite.host(name), {
      requests: 4000,
      rate: 40,
      concurrency: 64,
      maxDurationMs: 100_000,
      method: 'POST',
      requestFor: (i) => ({
        headers: { 'x-ml-inference-id': `cut-${i}` },
        body: JSON.stringify({ passenger: i, features: [i % 3, 1, 2] }),
      }),
    });
    let frozenFor: number;
    let falseAfter: number;
    try {
      // The store accepts connections and never answers: each write hangs until the agent's timeout.
      const frozen = Date.now();
      minio.freeze();
      const failing = await waitForEndpoint(
        namespace,
        name,
        'DataCaptured False while the store hangs',
        (x) => condition(x)?.status === 'False',
        60_000,
      );
      falseAfter = Date.now() - frozen;
      expect(condition(failing)).toMatchObject({ reason: 'SinkFailing' });
      expect(condition(failing)!.message).toContain(`s3://${bucket}/records`);
      // Thirty seconds of outage in all, whatever the condition took to show it.
      // (Timers may fire a millisecond early by the wall clock: wait until it says 30 s.)
      while (Date.now() - frozen < 30_000) await new Promise((r) => setTimeout(r, 30_000 - (Date.now() - frozen) + 5));
      frozenFor = Date.now() - frozen;
    } finally {
      minio.thaw();
    }
    const thawed = Date.now();
    await waitForEndpoint(
      namespace,
      name,
      'DataCaptured True once the store answers again',
      (x) => condition(x)?.status === 'True',
      90_000,
    );
    const trueAfter = Date.now() - thawed;
    run.stop();
    const report = await run.done;
    printReport('the store hanging for 30 s', report);
    expectServed(run, { namespace, backends: [instance] });
    // Capture resumed, and what was sampled during the outage waited in the buffer: every record is there.
    const found = (await settledRecords(`records/${namespace}/${name}/`, 3)).filter((r) =>
      r.eventMetadata.inferenceId?.startsWith('cut-'),
    );
    const sent = report.sent;
    const [low, high] = binomialInterval(0.25, sent).map((p) => p * sent);
    process.stdout.write(
      `[capture] store frozen for ${(frozenFor / 1000).toFixed(1)} s: DataCaptured False after ${(falseAfter / 1000).toFixed(1)} s, True again ${(trueAfter / 1000).toFixed(1)} s after it answered; ${found.length} records of ${sent} requests at 25% (99.9% interval ${low.toFixed(0)}..${high.toFixed(0)})\n`,
    );
    expect(frozenFor).toBeGreaterThanOrEqual(30_000);
    expect(found.length).toBeGreaterThanOrEqual(low);
    expect(found.length).toBeLessThanOrEqual(high);
    expect(new Set(found.map((r) => r.eventMetadata.inferenceId)).size).toBe(found.length);
  }, 400_000);

  it('changes the sampling and turns capture off under load: 0 failed requests, no pod restarted', async () => {
    const { namespace } = suite;
    const name = 'capture-s3';
    const e = await getEndpoint(namespace, name);
    const instance = e.status!.traffic![0].service;
    const before = await podUids(namespace, instance);
    const run = load(suite.host(name), {
      requests: 100_000,
      rate: 40,
      concurrency: 64,
      maxDurationMs: 270_000,
      requestFor: (i) => ({ headers: { 'x-ml-inference-id': `change-${i}` } }),
    });
    try {
      await applyConfig(namespace, name, {
        models: [{ model: name, instances: 2 }],
        dataCapture: {
          samplingPercent: 100,
          destination: `s3://${bucket}/records`,
          credentialsSecret: secret,
          rotation: { maxSeconds: 3 },
        },
      });
      // Every request after the change is captured, within the agents' config poll and kubelet's
      // refresh: 40 requests in a row all captured, which 25% sampling does once in 10^24.
      await waitFor('40 requests in a row captured, once sampling went to 100%', 120_000, async () => {
        const ids = new Set(
          (await records(`records/${namespace}/${name}/`)).map((r) => r.eventMetadata.inferenceId ?? ''),
        );
        let streak = 0;
        for (let i = 0; i < run.samples.length; i++) {
          streak = ids.has(`change-${i}`) ? streak + 1 : 0;
          if (streak >= 40) return true;
        }
        return undefined;
      });
      await applyConfig(namespace, name, {
        models: [{ model: name, instances: 2 }],
        dataCapture: { enabled: false, destination: `s3://${bucket}/records`, credentialsSecret: secret },
      });
      await waitForEndpoint(
        namespace,
        name,
        'DataCaptured False (disabled)',
        (x) => x.status?.conditions?.find((c) => c.type === 'DataCaptured')?.reason === 'CaptureDisabled',
        60_000,
      );
      // And the agents stop capturing once they have re-read their config: the newest captured
      // request stays the same while 200 more are answered (both pods get their share) and files
      // rotate (every 3 s). The next test turns capture on again and must not see this one's change
      // arrive late.
      let newest = -1;
      let since = Date.now();
      await waitFor('the agents to stop capturing', 120_000, async () => {
        const ids = (await records(`records/${namespace}/${name}/`))
          .map((r) => r.eventMetadata.inferenceId ?? '')
          .filter((id) => id.startsWith('change-'))
          .map((id) => Number(id.slice('change-'.length)));
        const top = ids.reduce((a, b) => Math.max(a, b), -1);
        if (top !== newest) {
          newest = top;
          since = Date.now();
          return undefined;
        }
        return Date.now() - since >= 8000 && run.samples.length >= newest + 200 ? true : undefined;
      });
    } finally {
      run.stop();
    }
    const report = await run.done;
    printReport('sampling 25% -> 100% -> off', report);
    expectServed(run, { namespace, backends: [instance] });
    expect(await podUids(namespace, instance)).toEqual(before);
    expect((await getEndpoint(namespace, name)).status!.traffic![0].service).toBe(instance);
  }, 400_000);

  it('a model pod deleted under load: 0 failed requests, and every record its agent took is in the store', async () => {
    const { namespace } = suite;
    const name = 'capture-s3';
    const e = await getEndpoint(namespace, name);
    const instance = e.status!.traffic![0].service;
    await applyConfig(namespace, name, {
      models: [{ model: name, instances: 2 }],
      dataCapture: {
        samplingPercent: 100,
        destination: `s3://${bucket}/records`,
        credentialsSecret: secret,
        rotation: { maxSeconds: 3 },
      },
    });
    const run = load(suite.host(name), {
      requests: 3000,
      rate: 40,
      concurrency: 64,
      maxDurationMs: 75_000,
      method: 'POST',
      requestFor: (i) => ({
        headers: { 'x-ml-inference-id': `term-${i}` },
        body: JSON.stringify({ passenger: i, features: [i % 5, 2, 3] }),
      }),
    });
    const ids = async () =>
      new Set((await records(`records/${namespace}/${name}/`)).map((r) => r.eventMetadata.inferenceId ?? ''));
    let from = -1;
    let victim = '';
    try {
      // Capture back on, at 100%, once 40 requests in a row have records; from there on, every one must.
      from = await waitFor('capture on again at 100%', 120_000, async () => {
        const seen = await ids();
        let streak = 0;
        for (let i = 0; i < run.samples.length; i++) {
          streak = seen.has(`term-${i}`) ? streak + 1 : 0;
          if (streak >= 40) return i - 39;
        }
        return undefined;
      });
      // Then a pod is deleted: its agent gets SIGTERM once the preStop drain is over, with records
      // in its open file and its queue.
      await waitFor('200 more requests', 30_000, async () => (run.samples.length >= from + 240 ? true : undefined));
      const pods = await user.list<KubeObject>(resources.pod, namespace, {
        labelSelector: `ml-operator.dev/model-instance=${instance}`,
      });
      victim = pods.items[0].metadata.name;
      await user.delete(resources.pod, namespace, victim);
      await waitFor('400 requests after the deletion', 60_000, async () =>
        run.samples.length >= from + 640 ? true : undefined,
      );
    } finally {
      run.stop();
    }
    const report = await run.done;
    printReport(`pod ${victim} deleted under load`, report);
    expectServed(run, { namespace, backends: [instance] });
    const found = (await settledRecords(`records/${namespace}/${name}/`, 3)).filter((r) =>
      r.eventMetadata.inferenceId?.startsWith('term-'),
    );
    const captured = new Set(found.map((r) => r.eventMetadata.inferenceId));
    const answered = run.samples.filter((x) => x.i >= from && x.status === 200);
    const missing = answered.filter((x) => !captured.has(`term-${x.i}`)).map((x) => `term-${x.i}`);
    const fromVictim = found.filter((r) => r.mlOperator.pod === victim).length;
    process.stdout.write(
      `[capture] pod ${victim} deleted under load: ${answered.length - missing.length} of ${answered.length} answered requests captured at 100%, ${fromVictim} records from the deleted pod\n`,
    );
    if (missing.length) {
      // Which pod answered the requests without a record, and when: to tell a lost file from a gap in sampling.
      const byPod = new Map<string, { count: number; first: number; last: number; from: number; to: number }>();
      for (const x of answered.filter((a) => !captured.has(`term-${a.i}`))) {
        const pod = x.backend?.pod ?? '-';
        const e = byPod.get(pod) ?? { count: 0, first: x.i, last: x.i, from: x.start, to: x.start };
        byPod.set(pod, {
          count: e.count + 1,
          first: Math.min(e.first, x.i),
          last: Math.max(e.last, x.i),
          from: Math.min(e.from, x.start),
          to: Math.max(e.to, x.start),
        });
      }
      const recordsByPod = new Map<string, number>();
      for (const r of found) recordsByPod.set(r.mlOperator.pod, (recordsByPod.get(r.mlOperator.pod) ?? 0) + 1);
      process.stdout.write(
        `[capture] answered without a record, by pod: ${JSON.stringify([...byPod])}; records by pod: ${JSON.stringify([...recordsByPod])}; capture on from request ${from}, ${victim} deleted\n`,
      );
    }
    expect(fromVictim).toBeGreaterThan(0);
    expect(missing.slice(0, 20), `${missing.length} answered requests without a record`).toEqual([]);
  }, 400_000);

  it('refuses a destination of another scheme at apply, naming the accepted ones', async () => {
    const err = await applyConfig(suite.namespace, 'bad-destination', {
      models: [{ model: 'm' }],
      dataCapture: { destination: 'ftp://example.com/records' },
    }).catch((e: unknown) => e as Error);
    expect(String(err)).toContain(
      'destination must be s3://<bucket>/<prefix>, gs://<bucket>/<prefix>, azure://<account>/<container>/<prefix> or pvc://<claim>/<path>',
    );
  });
});

describe('Data Capture to Cloud Storage (fake-gcs-server), Azure Blob (Azurite) and a PersistentVolumeClaim', () => {
  let gcs: RunningStore | undefined;
  let azurite: RunningStore | undefined;
  let removeVolume: (() => Promise<unknown>) | undefined;
  afterAll(async () => {
    await Promise.all([gcs?.stop(), azurite?.stop(), removeVolume?.()]);
  });

  it('gs://: keeps 25% of 2,000 requests through the gateway, each record byte-equal to what its client sent and got', async () => {
    gcs = await startFakeGcs({}, inject('network').hostAddress);
    const storage = new Storage({ apiEndpoint: gcs.url, projectId: 'captures' });
    await storage.createBucket(bucket);
    await sampled('capture-gs', {
      root: `gs://${bucket}/records`,
      secret: { name: 'capture-gcs', data: { STORAGE_EMULATOR_HOST: gcs.url } },
      async read(prefix) {
        const [files] = await storage.bucket(bucket).getFiles({ prefix: `records/${prefix}` });
        return parseLines(await Promise.all(files.map(async (f) => (await f.download())[0].toString())));
      },
    });
  }, 400_000);

  it('azure://: keeps 25% of 2,000 requests through the gateway, each record byte-equal to what its client sent and got', async () => {
    azurite = await startAzurite(inject('network').hostAddress);
    const endpoint = `${azurite.url}/${azuriteAccount.name}`;
    const container = BlobServiceClient.fromConnectionString(
      `DefaultEndpointsProtocol=http;AccountName=${azuriteAccount.name};AccountKey=${azuriteAccount.key};BlobEndpoint=${endpoint};`,
    ).getContainerClient(bucket);
    await container.create();
    await sampled('capture-azure', {
      root: `azure://${azuriteAccount.name}/${bucket}/records`,
      secret: {
        name: 'capture-azure',
        data: { AZURE_STORAGE_KEY: azuriteAccount.key, AZURE_STORAGE_BLOB_ENDPOINT: endpoint },
      },
      async read(prefix) {
        const texts: string[] = [];
        for await (const b of container.listBlobsFlat({ prefix: `records/${prefix}` }))
          texts.push((await container.getBlobClient(b.name).downloadToBuffer()).toString());
        return parseLines(texts);
      },
    });
  }, 400_000);

  it('pvc://: keeps 25% of 2,000 requests through the gateway, each record byte-equal to what its client sent and got', async () => {
    const { namespace } = suite;
    // A claim bound to a hostPath volume, as an administrator provides one: the pods of every node
    // write to that node's directory.
    const path = '/var/lib/ml-captures';
    const volume = `captures-${namespace}`;
    const volumes = {
      group: '',
      version: 'v1',
      kind: 'PersistentVolume',
      plural: 'persistentvolumes',
      namespaced: false,
    } as const;
    removeVolume = () => user.delete(volumes, undefined, volume);
    await user.apply(volumes, {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: volume },
      spec: {
        capacity: { storage: '1Gi' },
        accessModes: ['ReadWriteMany'],
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: '',
        hostPath: { path, type: 'DirectoryOrCreate' },
        claimRef: { namespace, name: 'captures' },
      },
    });
    await user.apply(
      { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims', namespaced: true },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'captures', namespace },
        spec: {
          accessModes: ['ReadWriteMany'],
          storageClassName: '',
          volumeName: volume,
          resources: { requests: { storage: '1Gi' } },
        },
      },
    );
    const nodes = join(dirname(inject('kubeconfigPath')), 'data', 'nodes');
    await sampled('capture-pvc', {
      root: 'pvc://captures/records',
      async read(prefix) {
        const texts: string[] = [];
        for (const node of existsSync(nodes) ? readdirSync(nodes) : []) {
          const dir = join(nodes, node, path, 'records', prefix);
          if (!existsSync(dir)) continue;
          for (const file of readdirSync(dir, { recursive: true, withFileTypes: true }))
            if (file.isFile() && file.name.endsWith('.jsonl'))
              texts.push(readFileSync(join(file.parentPath, file.name), 'utf8'));
        }
        return parseLines(texts);
      },
    });
  }, 400_000);
});
