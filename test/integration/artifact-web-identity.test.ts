// s3:// with no Secret at all: the fetcher exchanges a ServiceAccount token for temporary keys with
// STS AssumeRoleWithWebIdentity, as on EKS with IRSA. The local API server is the OIDC issuer; MinIO
// (ci/object-stores.ts) trusts it through its discovery document and keys, and grants a role with
// the readonly policy to tokens of its audience. A wrong role, a token of another audience, a forged
// and an expired token are refused with a message that names the URI and what to check. End to end,
// a model with spec.artifactIdentity serves from that bucket with no keys anywhere, and a model with
// a role the store does not know shows the fetcher's message in its endpoint's ArtifactsFetched
// condition.
import { createHash, createPrivateKey, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Agent, get } from 'node:https';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { publishArtifact } from '../../ci/cluster/artifacts.ts';
import type { ControllerProcess, Release } from '../../ci/cluster/operator.ts';
import { minioRoot, startMinio, type RunningStore } from '../../ci/object-stores.ts';
import { waitFor } from '../../ci/wait.ts';
import type { Env } from '../../controller/src/fetcher/log.ts';
import { main } from '../../controller/src/fetcher/main.ts';
import { createNamespace, deleteNamespace } from './kube.ts';
import { admin, applyConfig, applyEndpoint, applyModel, inService, k8s, runController, waitForEndpoint } from './ml.ts';
import { installGatewayRelease, uninstallRelease } from './traffic.ts';

/** The audience the role trusts: MinIO's client ID for the provider. */
const audience = 'minio-sts';
const serviceAccount = 'model-reader';
const content = 'weights-from-web-identity';

let namespace: string;
let minio: RunningStore;
let dir: string;
let roleArn: string;
let binding: string;
let release: Release;
let controller: ControllerProcess;
const core = () => admin.makeApiClient(k8s.CoreV1Api);

async function tokenFor(audiences: string[]): Promise<string> {
  const res = await core().createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: { spec: { audiences, expirationSeconds: 600 } },
  });
  const token = res.status?.token;
  if (!token) throw new Error(`the API server issued no token for ServiceAccount ${namespace}/${serviceAccount}`);
  return token;
}

function tokenFile(name: string, token: string): string {
  const file = join(dir, name);
  writeFileSync(file, token);
  return file;
}

async function run(uri: string, env: Env) {
  const lines: string[] = [];
  const target = mkdtempSync(join(dir, 'target-'));
  const code = await main([uri, target], env, { retryDelaysMs: [5, 10], timeoutMs: 10_000, log: (l) => lines.push(l) });
  const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    code,
    target,
    logs,
    text: lines.join('\n'),
    error: logs.find((l) => l.level === 'error')?.msg as string | undefined,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'web-identity-'));
  namespace = await createNamespace(admin, 'web-identity');
  await core().createNamespacedServiceAccount({ namespace, body: { metadata: { name: serviceAccount } } });
  // OIDC discovery for relying parties that hold no credentials, as a cluster that is an identity
  // provider grants it (the API server serves it to ServiceAccounts only by default).
  binding = `oidc-discovery-${namespace}`;
  await admin.makeApiClient(k8s.RbacAuthorizationV1Api).createClusterRoleBinding({
    body: {
      metadata: { name: binding },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'system:service-account-issuer-discovery',
      },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' }],
    },
  });
  const cluster = admin.getCurrentCluster()!;
  const caFile = join(dir, 'cluster-ca.crt');
  writeFileSync(caFile, Buffer.from(cluster.caData!, 'base64'));
  const configUrl = `${cluster.server}/.well-known/openid-configuration`;
  // Anonymous, as MinIO will ask: the binding is in force once this answers.
  const agent = new Agent({ ca: readFileSync(caFile) });
  await waitFor(
    'anonymous OIDC discovery on the API server',
    30_000,
    () =>
      new Promise<true | undefined>((resolve) => {
        get(configUrl, { agent }, (res) => {
          res.resume();
          resolve(res.statusCode === 200 ? true : undefined);
        }).on('error', () => resolve(undefined));
      }),
  );
  agent.destroy();
  // On the host's side of the cluster's veth pair: model pods' fetchers run in its network namespace.
  minio = await startMinio({
    address: inject('network').hostAddress,
    openId: { configUrl, clientId: audience, rolePolicy: 'readonly', caFile },
  });
  // MinIO names the role after its client ID: arn:minio:iam:::role/<base64url(sha1(client ID))>.
  roleArn = `arn:minio:iam:::role/${createHash('sha1').update(audience).digest('base64url')}`;
  const s3 = new S3Client({
    endpoint: minio.url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: minioRoot.user, secretAccessKey: minioRoot.password },
  });
  await s3.send(new CreateBucketCommand({ Bucket: 'models' }));
  await s3.send(new PutObjectCommand({ Bucket: 'models', Key: 'reader/model.bin', Body: content }));
  publishArtifact(dir, 'model.tar.gz', { name: 'reader', format: 'demo' });
  await s3.send(
    new PutObjectCommand({
      Bucket: 'models',
      Key: 'reader/model.tar.gz',
      Body: readFileSync(join(dir, 'model.tar.gz')),
    }),
  );
  s3.destroy();
}, 180_000);

afterAll(async () => {
  await controller?.stop();
  if (release) await uninstallRelease(release);
  await minio?.stop();
  if (binding)
    await admin
      .makeApiClient(k8s.RbacAuthorizationV1Api)
      .deleteClusterRoleBinding({ name: binding })
      .catch(() => undefined);
  if (namespace) await deleteNamespace(admin, namespace);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const identityEnv = (file: string, arn = roleArn): Env => ({
  AWS_ROLE_ARN: arn,
  AWS_WEB_IDENTITY_TOKEN_FILE: file,
  AWS_ENDPOINT_URL: minio.url,
  AWS_REGION: 'us-east-1',
});

describe('s3:// with web identity (STS AssumeRoleWithWebIdentity, the API server as OIDC issuer)', () => {
  it('downloads with a ServiceAccount token and no keys; without the token the same request is anonymous and refused', async () => {
    const file = tokenFile('token', await tokenFor([audience]));
    const r = await run('s3://models/reader/model.bin', identityEnv(file));
    expect(r.code, r.text).toBe(0);
    expect(readFileSync(join(r.target, 'model.bin'), 'utf8')).toBe(content);
    expect(r.logs.find((l) => l.msg === 'credentials')).toMatchObject({ source: 'web identity', roleArn });
    const anonymous = await run('s3://models/reader/model.bin', {
      AWS_ENDPOINT_URL: minio.url,
      AWS_REGION: 'us-east-1',
    });
    expect(anonymous.code).toBe(1);
    expect(anonymous.error).toMatch(/^403 Forbidden .*the request was anonymous/);
  });

  it('names the role and what to check when the role is not one the store knows', async () => {
    const file = tokenFile('token-role', await tokenFor([audience]));
    const wrong = 'arn:minio:iam:::role/no-such-role';
    const r = await run('s3://models/reader/model.bin', identityEnv(file, wrong));
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      new RegExp(
        `^could not assume role ${wrong} with the web identity token ${file} for s3://models/reader/model\\.bin \\(400 InvalidParameterValue: .*\\): check that the role exists, that its trust policy allows sts:AssumeRoleWithWebIdentity`,
      ),
    );
    expect(r.logs.filter((l) => l.msg === 'retrying')).toEqual([]);
  });

  it('refuses a token of another audience, and a forged one, saying which', async () => {
    const other = tokenFile('token-other', await tokenFor(['https://kubernetes.default.svc.cluster.local']));
    const r = await run('s3://models/reader/model.bin', identityEnv(other));
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      new RegExp(
        `^could not assume role ${roleArn.replace(/[/+]/g, '\\$&')} with the web identity token ${other} for s3://models/reader/model\\.bin \\(400 \\w+: .*azp.*\\): the token's audience is not one the role trusts`,
      ),
    );
    const real = await tokenFor([audience]);
    const [header, payload, signature] = real.split('.');
    const forgedPayload = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(payload, 'base64url').toString()),
        sub: 'system:serviceaccount:kube-system:admin',
      }),
    ).toString('base64url');
    const forged = tokenFile('token-forged', `${header}.${forgedPayload}.${signature}`);
    const f = await run('s3://models/reader/model.bin', identityEnv(forged));
    expect(f.code).toBe(1);
    expect(f.error).toMatch(
      /^could not assume role .* with the web identity token .*token-forged for s3:\/\/models\/reader\/model\.bin \(400 \w+: .*\): the token's signature was not accepted: check that the identity provider trusts this cluster's OIDC issuer/,
    );
  });

  it('says an expired token has expired', async () => {
    // The API server issues tokens for ten minutes at least: this one is signed with its own
    // service-account key (the control plane's sa.key), exactly as it would sign, but expired.
    const real = await tokenFor([audience]);
    const [header, payload] = real.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const now = Math.floor(Date.now() / 1000);
    const expiredPayload = Buffer.from(
      JSON.stringify({ ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 }),
    ).toString('base64url');
    const key = createPrivateKey(readFileSync(join(dirname(inject('kubeconfigPath')), 'sa.key')));
    const signature = sign('sha256', Buffer.from(`${header}.${expiredPayload}`), key).toString('base64url');
    const file = tokenFile('token-expired', `${header}.${expiredPayload}.${signature}`);
    const r = await run('s3://models/reader/model.bin', identityEnv(file));
    expect(r.code).toBe(1);
    expect(r.error).toMatch(
      /^could not assume role .* with the web identity token .*token-expired for s3:\/\/models\/reader\/model\.bin \(400 .*\): the ServiceAccount token has expired/,
    );
  });
});

describe('a model with spec.artifactIdentity, end to end', () => {
  beforeAll(async () => {
    release = await installGatewayRelease([namespace], 'shared');
    controller = await runController([namespace], { release });
    // The store's address only: no keys anywhere.
    await core().createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'minio' }, stringData: { AWS_ENDPOINT_URL: minio.url, AWS_REGION: 'us-east-1' } },
    });
  }, 240_000);

  const model = (awsRoleArn: string) => ({
    image: 'acme/reader:1',
    artifact: 's3://models/reader/model.tar.gz',
    readinessPath: '/healthz',
    serviceAccountName: serviceAccount,
    artifactSecret: 'minio',
    artifactIdentity: { awsRoleArn, audience },
  });

  it('serves from the bucket through the projected token and the role', async () => {
    await applyModel(namespace, 'reader', model(roleArn));
    await applyConfig(namespace, 'c', { models: [{ model: 'reader' }] });
    await applyEndpoint(namespace, 'e', { config: 'c', rollout: { drainSeconds: 1 } });
    const e = await waitForEndpoint(namespace, 'e', 'InService', inService, 180_000);
    expect(e.status?.conditions?.find((c) => c.type === 'ArtifactsFetched')).toBeUndefined();
  });

  it('shows why in the endpoint when the role is not one the store knows', async () => {
    const wrong = 'arn:minio:iam:::role/no-such-role';
    await applyModel(namespace, 'wrong-role', model(wrong));
    await applyConfig(namespace, 'bad', { models: [{ model: 'wrong-role' }] });
    await applyEndpoint(namespace, 'bad', { config: 'bad', rollout: { drainSeconds: 1 } });
    const fetched = (e: {
      status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
    }) => e.status?.conditions?.find((c) => c.type === 'ArtifactsFetched');
    const e = await waitForEndpoint(
      namespace,
      'bad',
      'ArtifactsFetched False',
      (x) => fetched(x)?.status === 'False',
      120_000,
    );
    const condition = fetched(e)!;
    expect(condition.reason).toBe('FetchFailed');
    expect(condition.message).toMatch(
      new RegExp(
        `^wrong-role-[0-9a-f]+: could not assume role ${wrong} with the web identity token \\S+/token for s3://models/reader/model\\.tar\\.gz \\(400 InvalidParameterValue: .*\\): check that the role exists`,
      ),
    );
  });
});
