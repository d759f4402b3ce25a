// Data Capture in the real journey: MinIO in the local cluster's network, where the model agents in
// the real node's containers write their records (s3://captures/records/...), the credentials in a
// Secret of the models' namespace; the records are read back as files, as a monitoring or retraining
// job would read them.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { DataCaptureConfig } from '../../controller/src/api/generated.ts';
import type { KubeObject } from '../../controller/src/kube/resources.ts';
import { log } from '../log.ts';
import { minioRoot, startMinio, type RunningStore } from '../object-stores.ts';
import { waitFor } from '../wait.ts';
import type { ControlPlane } from './control-plane.ts';
import type { RealJourney } from './real-journey.ts';

const bucket = 'captures';
const prefix = 'records';
const secretName = 'captures-minio';
/** How often the agents close a record file, and so how soon a record can be read. */
const rotationSeconds = 5;
const secretResource = { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true };

export interface JourneyCapture {
  store: RunningStore;
  /** An endpoint config's dataCapture block that writes to this store. */
  dataCapture(samplingPercent: number): DataCaptureConfig;
  /** Where the records of `endpoint` go: s3://captures/records/<namespace>/<endpoint>/. */
  where(endpoint: string): string;
  /** The keys of `endpoint`'s record files, oldest first. */
  files(endpoint: string): Promise<string[]>;
  /** The count of `endpoint`'s records in the store (the lines of its files). */
  records(endpoint: string): Promise<number>;
  /**
   * Waits until the store holds at least `atLeast` records of `endpoint`, the same count over more
   * than a file rotation (the agents close their files every 5 s); that count.
   */
  settled(endpoint: string, atLeast: number): Promise<number>;
  /** Copies `endpoint`'s record files into `dir`, under their keys; the paths written. */
  download(endpoint: string, dir: string): Promise<string[]>;
  stop(): Promise<void>;
}

/** Starts MinIO in the cluster's network with a bucket for the records, and the Secret the agents read. */
export async function startJourneyCapture(cluster: ControlPlane, journey: RealJourney): Promise<JourneyCapture> {
  const store = await startMinio({
    inNetwork: { namespace: cluster.network.namespace, address: cluster.network.address },
  });
  const s3 = new S3Client({
    endpoint: store.url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: minioRoot.user, secretAccessKey: minioRoot.password },
  });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await journey.user.apply(secretResource, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: secretName, namespace: journey.models },
      stringData: {
        AWS_ACCESS_KEY_ID: minioRoot.user,
        AWS_SECRET_ACCESS_KEY: minioRoot.password,
        AWS_ENDPOINT_URL_S3: store.url,
        AWS_REGION: 'us-east-1',
      },
    } as KubeObject);
  } catch (e) {
    s3.destroy();
    await store.stop();
    throw e;
  }
  log(`journey: Data Capture store: MinIO at ${store.url} in the cluster's network, bucket ${bucket}`);
  const keyPrefix = (endpoint: string) => `${prefix}/${journey.models}/${endpoint}/`;
  const files = async (endpoint: string) => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: keyPrefix(endpoint), ContinuationToken: token }),
      );
      for (const o of page.Contents ?? []) keys.push(o.Key!);
      token = page.NextContinuationToken;
    } while (token);
    return keys.sort();
  };
  const read = async (key: string) =>
    (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray();
  const records = async (endpoint: string) => {
    let n = 0;
    for (const key of await files(endpoint))
      n += Buffer.from(await read(key))
        .toString('utf8')
        .split('\n')
        .filter((line) => line.trim()).length;
    return n;
  };
  return {
    store,
    records,
    async settled(endpoint, atLeast) {
      let last = -1;
      let since = Date.now();
      return waitFor(`${atLeast} records of ${endpoint} in ${store.url}`, 120_000, async () => {
        const n = await records(endpoint);
        if (n !== last) {
          last = n;
          since = Date.now();
        }
        return n >= atLeast && Date.now() - since > rotationSeconds * 1000 + 1000 ? n : undefined;
      });
    },
    dataCapture: (samplingPercent) => ({
      samplingPercent,
      destination: `s3://${bucket}/${prefix}`,
      credentialsSecret: secretName,
      rotation: { maxSeconds: rotationSeconds },
    }),
    where: (endpoint) => `s3://${bucket}/${keyPrefix(endpoint)}`,
    files,
    async download(endpoint, dir) {
      const written: string[] = [];
      for (const key of await files(endpoint)) {
        const body = await (
          await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
        ).Body!.transformToByteArray();
        const path = join(dir, key);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, body);
        written.push(path);
      }
      return written;
    },
    async stop() {
      s3.destroy();
      await store.stop();
    },
  };
}

/**
 * A reader of the records, as a monitoring job would be one: Python's json over every JSON Lines file
 * under a directory (argv[1]); prints the count of records, of each variant, of each request body and
 * of each answer's labels, and the first record, as one JSON object.
 */
export const readCapturesPython = `
import collections, json, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).rglob("*.jsonl"))
records = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
count = lambda values: dict(collections.Counter(values))
print(json.dumps({
    "files": len(files),
    "records": len(records),
    "variants": count(r["mlOperator"]["variant"] for r in records),
    "inputs": count(r["captureData"]["endpointInput"]["data"] for r in records),
    "labels": count(json.dumps(json.loads(r["captureData"]["endpointOutput"]["data"])["labels"], separators=(",", ":")) for r in records),
    "first": records[0] if records else None,
}))
`;

/** What readCapturesPython prints. */
export interface CapturesRead {
  files: number;
  records: number;
  variants: Record<string, number>;
  inputs: Record<string, number>;
  labels: Record<string, number>;
  first: Record<string, unknown> | null;
}
