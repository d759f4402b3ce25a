// The fetcher against real object stores on loopback: MinIO for s3://, fake-gcs-server for gs://,
// Azurite for Azure Blob (ci/object-stores.ts). Web identity (STS with a ServiceAccount token) needs
// a real API server: test/integration/artifact-web-identity.test.ts.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, PutBucketPolicyCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  azuriteAccount,
  minioRoot,
  startAzurite,
  startFakeGcs,
  startMinio,
  type RunningStore,
} from '../../../ci/object-stores.ts';
import { markerName } from './install.ts';
import type { Env } from './log.ts';
import { main } from './main.ts';

// The SDKs' default chains must not look for cloud metadata servers, which this machine has none of.
process.env.AWS_EC2_METADATA_DISABLED = 'true';

let dir: string;
let model: { tgz: Buffer; sha256: string };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fetcher-stores-'));
  const src = join(dir, 'model-src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'model.bin'), 'weights-123');
  writeFileSync(join(src, 'sub', 'config.json'), '{"layers":2}');
  execFileSync('tar', ['-czf', join(dir, 'model.tar.gz'), '-C', src, '.']);
  const tgz = readFileSync(join(dir, 'model.tar.gz'));
  model = { tgz, sha256: createHash('sha256').update(tgz).digest('hex') };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let target: string;
beforeEach(() => {
  target = mkdtempSync(join(dir, 'target-'));
});

async function run(uri: string, env: Env, options: string[] = []) {
  const lines: string[] = [];
  const code = await main([...options, uri, target], env, {
    retryDelaysMs: [5, 10],
    timeoutMs: 10_000,
    log: (l) => lines.push(l),
  });
  const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    code,
    lines,
    logs,
    text: lines.join('\n'),
    error: logs.find((l) => l.level === 'error')?.msg as string | undefined,
  };
}

const userFiles = () =>
  readdirSync(target)
    .filter((n) => !n.startsWith('.'))
    .sort();
const marker = () =>
  JSON.parse(readFileSync(join(target, markerName), 'utf8')) as { uri: string; sha256: string | null };
const retries = (r: { logs: Record<string, unknown>[] }) => r.logs.filter((l) => l.msg === 'retrying').length;

describe('s3:// against MinIO', () => {
  let minio: RunningStore;
  let admin: S3Client;
  let keys: Env;

  beforeAll(async () => {
    minio = await startMinio();
    admin = new S3Client({
      endpoint: minio.url,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: minioRoot.user, secretAccessKey: minioRoot.password },
    });
    await admin.send(new CreateBucketCommand({ Bucket: 'models' }));
    await admin.send(new PutObjectCommand({ Bucket: 'models', Key: 'titanic/v1/model.tar.gz', Body: model.tgz }));
    await admin.send(new PutObjectCommand({ Bucket: 'models', Key: 'dir/my model ü+1.bin', Body: 'odd-name' }));
    await admin.send(new CreateBucketCommand({ Bucket: 'public-models' }));
    await admin.send(new PutObjectCommand({ Bucket: 'public-models', Key: 'open.bin', Body: 'open-weights' }));
    const policy = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: { AWS: ['*'] },
          Action: ['s3:GetObject'],
          Resource: ['arn:aws:s3:::public-models/*'],
        },
      ],
    };
    await admin.send(new PutBucketPolicyCommand({ Bucket: 'public-models', Policy: JSON.stringify(policy) }));
    keys = {
      AWS_ACCESS_KEY_ID: minioRoot.user,
      AWS_SECRET_ACCESS_KEY: minioRoot.password,
      AWS_ENDPOINT_URL: minio.url,
      AWS_REGION: 'us-east-1',
    };
  }, 120_000);
  afterAll(async () => {
    admin?.destroy();
    await minio?.stop();
  });

  it('downloads with the keys of an artifactSecret, checks the digest and unpacks', async () => {
    const uri = 's3://models/titanic/v1/model.tar.gz';
    const r = await run(uri, keys, [`--sha256=${model.sha256}`, '--max-bytes=1000000']);
    expect(r.code, r.text).toBe(0);
    expect(userFiles()).toEqual(['model.bin', 'sub']);
    expect(readFileSync(join(target, 'sub', 'config.json'), 'utf8')).toBe('{"layers":2}');
    expect(marker()).toMatchObject({ uri, sha256: model.sha256 });
    expect(r.logs.find((l) => l.msg === 'credentials')).toMatchObject({ source: 'keys' });
    expect(r.text).not.toContain(minioRoot.password);
    expect(r.text).not.toContain(minioRoot.user);
  });

  it('fetches a key with spaces, a plus and non-ASCII characters', async () => {
    const r = await run('s3://models/dir/my model ü+1.bin', keys);
    expect(r.code, r.text).toBe(0);
    expect(readFileSync(join(target, 'my model ü+1.bin'), 'utf8')).toBe('odd-name');
  });

  it('says which keys to check when the secret key is wrong, without retrying', async () => {
    const r = await run('s3://models/titanic/v1/model.tar.gz', {
      ...keys,
      AWS_SECRET_ACCESS_KEY: 'not-the-secret-key',
    });
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^403 Forbidden fetching s3:\/\/models\/titanic\/v1\/model\.tar\.gz \(SignatureDoesNotMatch: .*\): check the artifactSecret's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
    );
    expect(retries(r)).toBe(0);
    expect(userFiles()).toEqual([]);
  });

  it('names an unknown access key', async () => {
    const r = await run('s3://models/titanic/v1/model.tar.gz', { ...keys, AWS_ACCESS_KEY_ID: 'AKIDUNKNOWN0000' });
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^403 Forbidden fetching s3:\/\/models\/titanic\/v1\/model\.tar\.gz \(InvalidAccessKeyId: .*\): check the artifactSecret's AWS_ACCESS_KEY_ID/,
    );
  });

  it('explains a missing key', async () => {
    const r = await run('s3://models/titanic/v2/model.tar.gz', keys);
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^404 Not Found fetching s3:\/\/models\/titanic\/v2\/model\.tar\.gz \(NoSuchKey: .*\): check spec\.artifact \(bucket and key\) and AWS_ENDPOINT_URL$/,
    );
  });

  it('stops before downloading what the store announces as larger than --max-bytes', async () => {
    const r = await run('s3://models/titanic/v1/model.tar.gz', keys, ['--max-bytes=10']);
    expect(r.code).toBe(1);
    expect(r.error).toBe(
      `s3://models/titanic/v1/model.tar.gz is larger than --max-bytes=10: the server announces ${model.tgz.length} bytes; nothing was installed: raise the variant's size (spec.models[].size in the endpoint config) to fit the artifact`,
    );
  });

  it('refuses a download whose digest differs', async () => {
    const wrong = createHash('sha256').update('other').digest('hex');
    const r = await run('s3://models/titanic/v1/model.tar.gz', keys, [`--sha256=${wrong}`]);
    expect(r.code).toBe(1);
    expect(r.error).toBe(
      `sha256 mismatch for s3://models/titanic/v1/model.tar.gz: expected ${wrong}, got ${model.sha256}; nothing was installed: check spec.artifactSha256 and that the artifact is the one it was computed from`,
    );
    expect(userFiles()).toEqual([]);
  });

  it('reads a public bucket anonymously when no credentials are found, and says so when refused', async () => {
    const open = await run('s3://public-models/open.bin', { AWS_ENDPOINT_URL: minio.url });
    expect(open.code, open.text).toBe(0);
    expect(readFileSync(join(target, 'open.bin'), 'utf8')).toBe('open-weights');
    expect(open.logs.some((l) => l.level === 'warn' && /no AWS credentials found/.test(String(l.msg)))).toBe(true);
    const refused = await run('s3://models/titanic/v1/model.tar.gz', { AWS_ENDPOINT_URL: minio.url });
    expect(refused.code).toBe(1);
    expect(refused.error).toMatch(
      /^403 Forbidden fetching s3:\/\/models\/titanic\/v1\/model\.tar\.gz \(AccessDenied: .*\): the request was anonymous \(no AWS credentials found\): set spec\.artifactSecret/,
    );
  });

  it('retries a store that does not answer, then names the network error', async () => {
    const r = await run('s3://models/m.bin', { ...keys, AWS_ENDPOINT_URL: 'http://127.0.0.1:9' });
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^network error fetching s3:\/\/models\/m\.bin \(.*ECONNREFUSED.*\): check the host name, the port and the pod's network access .* \(after 3 attempts\)$/,
    );
  });
});

describe('gs:// against fake-gcs-server', () => {
  let gcs: RunningStore;
  beforeAll(async () => {
    gcs = await startFakeGcs({ 'models/titanic/v1/model.tgz': model.tgz });
  }, 120_000);
  afterAll(async () => gcs?.stop());

  it('downloads through the emulator endpoint, checks the digest and unpacks', async () => {
    const uri = 'gs://models/titanic/v1/model.tgz';
    const r = await run(uri, { STORAGE_EMULATOR_HOST: gcs.url }, [`--sha256=${model.sha256}`, '--max-bytes=1000000']);
    expect(r.code, r.text).toBe(0);
    expect(userFiles()).toEqual(['model.bin', 'sub']);
    expect(marker()).toMatchObject({ uri, sha256: model.sha256 });
    expect(r.logs.find((l) => l.msg === 'fetching')).toMatchObject({ bytes: model.tgz.length });
  });

  it("sends the artifactSecret's access token to GCS_ENDPOINT_URL, and none to an emulator", async () => {
    // A recording relay in front of the emulator, which itself checks no credentials.
    const seen: (string | undefined)[] = [];
    const relay = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      const upstream = http.request(
        { host: '127.0.0.1', port: gcs.port, path: req.url, method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const relayUrl = `http://127.0.0.1:${(relay.address() as AddressInfo).port}`;
    try {
      const token = 'ya29.artifact-secret-token';
      const r = await run('gs://models/titanic/v1/model.tgz', {
        GCS_ENDPOINT_URL: relayUrl,
        GOOGLE_OAUTH_ACCESS_TOKEN: token,
      });
      expect(r.code, r.text).toBe(0);
      expect(userFiles()).toEqual(['model.bin', 'sub']);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((a) => a === `Bearer ${token}`)).toBe(true);
      expect(r.text).not.toContain(token);
      seen.length = 0;
      target = mkdtempSync(join(dir, 'target-'));
      const emulated = await run('gs://models/titanic/v1/model.tgz', {
        STORAGE_EMULATOR_HOST: relayUrl,
        GOOGLE_OAUTH_ACCESS_TOKEN: token,
      });
      expect(emulated.code, emulated.text).toBe(0);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((a) => a === undefined)).toBe(true);
    } finally {
      relay.closeAllConnections();
      await new Promise((r) => relay.close(r));
    }
  });

  it('explains a missing object without retrying', async () => {
    const r = await run('gs://models/titanic/v2/model.tgz', { STORAGE_EMULATOR_HOST: gcs.url });
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^404 Not Found fetching gs:\/\/models\/titanic\/v2\/model\.tgz \(.*\): check spec\.artifact \(bucket and object\) and the endpoint$/,
    );
    expect(retries(r)).toBe(0);
  });

  it('stops before downloading what is larger than --max-bytes', async () => {
    const r = await run('gs://models/titanic/v1/model.tgz', { STORAGE_EMULATOR_HOST: gcs.url }, ['--max-bytes=10']);
    expect(r.code).toBe(1);
    expect(r.error).toMatch(/is larger than --max-bytes=10: the server announces \d+ bytes; nothing was installed/);
  });
});

describe('Azure Blob against Azurite', () => {
  let azurite: RunningStore;
  let endpoint: string;
  let connectionString: string;

  beforeAll(async () => {
    azurite = await startAzurite();
    endpoint = `${azurite.url}/${azuriteAccount.name}`;
    connectionString = `DefaultEndpointsProtocol=http;AccountName=${azuriteAccount.name};AccountKey=${azuriteAccount.key};BlobEndpoint=${endpoint};`;
    const service = BlobServiceClient.fromConnectionString(connectionString);
    const container = service.getContainerClient('models');
    await container.create();
    await container.getBlockBlobClient('titanic/v1/model.tar.gz').uploadData(model.tgz);
  }, 120_000);
  afterAll(async () => azurite?.stop());

  const sas = (expiresOn: Date) =>
    generateBlobSASQueryParameters(
      {
        containerName: 'models',
        blobName: 'titanic/v1/model.tar.gz',
        permissions: BlobSASPermissions.parse('r'),
        startsOn: new Date(Date.now() - 60_000),
        expiresOn,
      },
      new StorageSharedKeyCredential(azuriteAccount.name, azuriteAccount.key),
    ).toString();

  it('downloads azure://<account>/<container>/<blob> with the account key of an artifactSecret', async () => {
    const uri = `azure://${azuriteAccount.name}/models/titanic/v1/model.tar.gz`;
    const r = await run(uri, { AZURE_STORAGE_KEY: azuriteAccount.key, AZURE_STORAGE_BLOB_ENDPOINT: endpoint }, [
      `--sha256=${model.sha256}`,
      '--max-bytes=1000000',
    ]);
    expect(r.code, r.text).toBe(0);
    expect(userFiles()).toEqual(['model.bin', 'sub']);
    expect(marker()).toMatchObject({ uri, sha256: model.sha256 });
    expect(r.text).not.toContain(azuriteAccount.key);
  });

  it('downloads with a connection string', async () => {
    const r = await run(`azure://${azuriteAccount.name}/models/titanic/v1/model.tar.gz`, {
      AZURE_STORAGE_CONNECTION_STRING: connectionString,
    });
    expect(r.code, r.text).toBe(0);
    expect(userFiles()).toEqual(['model.bin', 'sub']);
    expect(r.text).not.toContain(azuriteAccount.key);
  });

  it('downloads the blob URL form with the SAS in its query, and explains an expired SAS', async () => {
    const uri = `https://${azuriteAccount.name}.blob.core.windows.net/models/titanic/v1/model.tar.gz?${sas(new Date(Date.now() + 3_600_000))}`;
    const r = await run(uri, { AZURE_STORAGE_BLOB_ENDPOINT: endpoint });
    expect(r.code, r.text).toBe(0);
    expect(userFiles()).toEqual(['model.bin', 'sub']);
    expect(r.text).not.toMatch(/sig=[^R]/);
    const expired = await run(`azure://${azuriteAccount.name}/models/titanic/v1/model.tar.gz`, {
      AZURE_STORAGE_SAS_TOKEN: sas(new Date(Date.now() - 1000)),
      AZURE_STORAGE_BLOB_ENDPOINT: endpoint,
    });
    expect(expired.code).toBe(1);
    expect(expired.error).toMatch(
      /^403 Forbidden fetching azure:\/\/devstoreaccount1\/models\/titanic\/v1\/model\.tar\.gz \((AuthorizationFailure|AuthenticationFailed): .*\): check the SAS: its signature, expiry \(se\) and permissions/,
    );
  });

  it('says to check the account key when it is wrong, without retrying', async () => {
    const wrongKey = Buffer.alloc(64, 7).toString('base64');
    const r = await run(`azure://${azuriteAccount.name}/models/titanic/v1/model.tar.gz`, {
      AZURE_STORAGE_KEY: wrongKey,
      AZURE_STORAGE_BLOB_ENDPOINT: endpoint,
    });
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^403 Forbidden fetching azure:\/\/devstoreaccount1\/models\/titanic\/v1\/model\.tar\.gz \((AuthorizationFailure|AuthenticationFailed): /,
    );
    expect(r.error).toMatch(/check the artifactSecret's AZURE_STORAGE_KEY/);
    expect(retries(r)).toBe(0);
  });

  it('explains a missing blob', async () => {
    const r = await run(`azure://${azuriteAccount.name}/models/titanic/v2/model.tar.gz`, {
      AZURE_STORAGE_KEY: azuriteAccount.key,
      AZURE_STORAGE_BLOB_ENDPOINT: endpoint,
    });
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^404 Not Found fetching azure:\/\/devstoreaccount1\/models\/titanic\/v2\/model\.tar\.gz \(BlobNotFound: .*\): check spec\.artifact \(account, container and blob\) and AZURE_STORAGE_BLOB_ENDPOINT$/,
    );
  });
});
