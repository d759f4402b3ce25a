// Capture files into object stores: s3://bucket/prefix, gs://bucket/prefix,
// azure://account/container/prefix. The clients are the fetcher's (fetcher/s3.ts, gcs.ts, azure.ts):
// the same credential chains and endpoint overrides (AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST,
// AZURE_STORAGE_BLOB_ENDPOINT...), read from the agent's environment.
import { HeadBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { azureService } from '../fetcher/azure.ts';
import { gcsStorage } from '../fetcher/gcs.ts';
import type { Env, Log } from '../fetcher/log.ts';
import { httpStatusText, s3Connection } from '../fetcher/s3.ts';
import type { Sink } from './sink.ts';

interface StoreError {
  name?: string;
  code?: string | number;
  Code?: string;
  message?: string;
  statusCode?: number;
  status?: number;
  $metadata?: { httpStatusCode?: number };
  response?: { status?: number };
}

/** What failed, in the store's words, and what to check. */
function describe(e: unknown, action: string, destination: string, permission: string): Error {
  const err = (e ?? {}) as StoreError;
  const status =
    err.$metadata?.httpStatusCode ??
    err.statusCode ??
    (typeof err.code === 'number' ? err.code : undefined) ??
    err.status ??
    err.response?.status;
  const code =
    err.Code ??
    (err.name && err.name !== 'Error' && err.name !== 'RestError' ? err.name : undefined) ??
    (typeof err.code === 'string' ? err.code : undefined);
  const said = [code, (err.message ?? String(e)).split('\n')[0].slice(0, 300)].filter(Boolean).join(': ');
  let hint: string;
  if (status === 401 || status === 403) hint = `check the capture credentials and that they may ${permission}`;
  else if (status === 404) hint = 'check that the bucket (or container) of the destination exists, and the endpoint';
  else if (status === 429 || (status !== undefined && status >= 500))
    hint = 'the store is failing or throttling: the agent retries';
  else if (status === undefined)
    hint = 'the store could not be reached: check the endpoint and the network; the agent retries';
  else hint = 'the store refused the request: check the destination';
  return new Error(
    `${status ? `${status} ${httpStatusText(status)} ` : ''}${action} ${destination} (${said}): ${hint}`,
  );
}

function split(destination: string): { scheme: string; parts: string[] } {
  const m = /^([a-z0-9]+):\/\/(.*)$/.exec(destination);
  if (!m) throw new Error(`unsupported capture destination ${destination}`);
  return { scheme: m[1], parts: m[2].split('/') };
}

const joinKey = (prefix: string, key: string) => (prefix ? `${prefix.replace(/\/+$/, '')}/${key}` : key);

export async function storeSink(destination: string, env: Env, log: Log, timeoutMs: number): Promise<Sink> {
  const { scheme, parts } = split(destination);
  if (scheme === 's3') {
    const [bucket, ...rest] = parts;
    const prefix = rest.join('/');
    const { connect } = s3Connection(env, log, timeoutMs, destination);
    return {
      destination,
      async check() {
        try {
          await (
            await connect()
          ).send(new HeadBucketCommand({ Bucket: bucket }), { abortSignal: AbortSignal.timeout(timeoutMs) });
        } catch (e) {
          throw describe(e, 'checking the bucket of', destination, 's3:ListBucket and s3:PutObject');
        }
      },
      async put(key, body) {
        try {
          await (
            await connect()
          ).send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: joinKey(prefix, key),
              Body: body,
              ContentType: 'application/jsonl',
            }),
            { abortSignal: AbortSignal.timeout(timeoutMs) },
          );
        } catch (e) {
          throw describe(e, 'writing to', destination, 's3:PutObject');
        }
      },
      close() {
        void connect().then(
          (c) => c.destroy(),
          () => {},
        );
      },
    };
  }
  if (scheme === 'gs') {
    const [bucketName, ...rest] = parts;
    const prefix = rest.join('/');
    const bucket = gcsStorage(env, log, timeoutMs, destination).storage.bucket(bucketName);
    return {
      destination,
      async check() {
        try {
          await bucket.getMetadata();
        } catch (e) {
          throw describe(
            e,
            'checking the bucket of',
            destination,
            'storage.objects.create on the bucket (roles/storage.objectCreator)',
          );
        }
      },
      async put(key, body) {
        try {
          await bucket
            .file(joinKey(prefix, key))
            .save(body, { resumable: false, validation: false, contentType: 'application/jsonl' });
        } catch (e) {
          throw describe(
            e,
            'writing to',
            destination,
            'storage.objects.create on the bucket (roles/storage.objectCreator)',
          );
        }
      },
      close() {},
    };
  }
  if (scheme === 'azure') {
    const [account, container, ...rest] = parts;
    const prefix = rest.join('/');
    const client = azureService(account, '', env, log, timeoutMs, destination).service.getContainerClient(container);
    const permission = 'write blobs in the container (Storage Blob Data Contributor)';
    return {
      destination,
      async check() {
        try {
          await client.getProperties({ abortSignal: AbortSignal.timeout(timeoutMs) });
        } catch (e) {
          throw describe(e, 'checking the container of', destination, permission);
        }
      },
      async put(key, body) {
        try {
          await client.getBlockBlobClient(joinKey(prefix, key)).uploadData(body, {
            blobHTTPHeaders: { blobContentType: 'application/jsonl' },
            abortSignal: AbortSignal.timeout(timeoutMs),
          });
        } catch (e) {
          throw describe(e, 'writing to', destination, permission);
        }
      },
      close() {},
    };
  }
  throw new Error(`unsupported capture destination ${destination}: expected s3://, gs://, azure:// or file://`);
}
