// s3:// through the AWS SDK: its signing, its region handling and its credential providers.
//
// Credentials, first found wins:
//   1. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), from spec.artifactSecret;
//   2. web identity: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA injects them, as does
//      spec.artifactIdentity), exchanged with STS AssumeRoleWithWebIdentity;
//   3. the SDK's default chain: EKS Pod Identity and other container credentials, shared config
//      files, instance metadata;
//   4. none found: an anonymous request, for public buckets.
// AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) points at an S3-compatible store such as MinIO, reached
// path-style; STS is reached at AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else AWS's own.
import { STATUS_CODES } from 'node:http';
import type { Readable } from 'node:stream';
import { GetObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { fromNodeProviderChain, fromTokenFile } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types';
import { FetchError } from './errors.ts';
import type { OpenedObject } from './download.ts';
import type { Env, Log } from './log.ts';
import { redactUri, type ArtifactSource } from './uri.ts';

type S3Source = Extract<ArtifactSource, { scheme: 's3' }>;

/** Where the credentials came from, for messages. */
export type Identity =
  | { kind: 'keys' }
  | { kind: 'web identity'; roleArn: string; tokenFile: string }
  | { kind: 'default chain' }
  | { kind: 'anonymous' };

interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: string;
}

const sdkCode = (e: SdkError) => e.Code ?? (e.name && e.name !== 'Error' ? e.name : undefined) ?? e.code;
const describe = (e: SdkError) => [sdkCode(e), e.message].filter(Boolean).join(': ').slice(0, 400);

function endpointOf(name: string, value: string): string {
  try {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
    return value;
  } catch {
    throw new FetchError(`invalid ${name} ${redactUri(value)}: expected a URL such as https://minio.example:9000`);
  }
}

/**
 * An S3 client for `shown` (a URI, for messages) with the credential chain above, made on first use
 * and kept. Shared with the model agent's capture writer, so that both read the same environment.
 */
export function s3Connection(
  env: Env,
  log: Log,
  timeoutMs: number,
  shown: string,
): { connect: () => Promise<S3Client>; identity: () => Identity } {
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';
  const s3EndpointName = env.AWS_ENDPOINT_URL_S3 ? 'AWS_ENDPOINT_URL_S3' : 'AWS_ENDPOINT_URL';
  const endpoint =
    env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL
      ? endpointOf(s3EndpointName, (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL)!)
      : undefined;
  const stsEndpoint =
    env.AWS_ENDPOINT_URL_STS || env.AWS_ENDPOINT_URL
      ? endpointOf(
          env.AWS_ENDPOINT_URL_STS ? 'AWS_ENDPOINT_URL_STS' : 'AWS_ENDPOINT_URL',
          (env.AWS_ENDPOINT_URL_STS || env.AWS_ENDPOINT_URL)!,
        )
      : undefined;
  const requestHandler = { connectionTimeout: timeoutMs, requestTimeout: timeoutMs };
  // Our own attempts (download.ts) retry, with the same messages for every source.
  const base: S3ClientConfig = {
    region,
    maxAttempts: 1,
    followRegionRedirects: true,
    requestHandler,
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
  };

  const {
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_SESSION_TOKEN: sessionToken,
    AWS_ROLE_ARN: roleArn,
    AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
  } = env;
  let identity: Identity;
  let provider: AwsCredentialIdentityProvider;
  if (accessKeyId || secretAccessKey) {
    if (!accessKeyId || !secretAccessKey)
      throw new FetchError(
        `incomplete AWS credentials: ${accessKeyId ? 'AWS_SECRET_ACCESS_KEY' : 'AWS_ACCESS_KEY_ID'} is missing: the artifactSecret needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
      );
    identity = { kind: 'keys' };
    const keys: AwsCredentialIdentity = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
    provider = async () => keys;
  } else if (roleArn || tokenFile) {
    if (!roleArn || !tokenFile)
      throw new FetchError(
        `incomplete web identity for ${shown}: ${roleArn ? 'AWS_WEB_IDENTITY_TOKEN_FILE' : 'AWS_ROLE_ARN'} is missing: both are needed to assume a role with the pod's ServiceAccount token`,
      );
    identity = { kind: 'web identity', roleArn, tokenFile };
    provider = fromTokenFile({
      roleArn,
      webIdentityTokenFile: tokenFile,
      roleSessionName: env.AWS_ROLE_SESSION_NAME || 'ml-operator-fetcher',
      clientConfig: { region, maxAttempts: 1, requestHandler, ...(stsEndpoint ? { endpoint: stsEndpoint } : {}) },
    });
  } else {
    identity = { kind: 'default chain' };
    provider = fromNodeProviderChain({
      clientConfig: { region, requestHandler, ...(stsEndpoint ? { endpoint: stsEndpoint } : {}) },
    });
  }

  let client: S3Client | undefined;
  const connect = async (): Promise<S3Client> => {
    if (client) return client;
    let credentials: AwsCredentialIdentity | undefined;
    try {
      credentials = await provider();
    } catch (e) {
      const err = e as SdkError & { tryNextLink?: boolean };
      if (
        identity.kind === 'default chain' &&
        /could not load credentials from any providers/i.test(err.message ?? '')
      ) {
        // Nothing configured anywhere: a public bucket may still serve it.
        log(
          'warn',
          'no AWS credentials found (no artifactSecret keys, no web identity, no Pod Identity or instance metadata): the request is anonymous',
          { uri: shown },
        );
        identity = { kind: 'anonymous' };
      } else {
        throw credentialError(err, identity, shown);
      }
    }
    client = new S3Client(
      identity.kind === 'anonymous'
        ? {
            ...base,
            credentials: { accessKeyId: '', secretAccessKey: '' },
            signer: { sign: async (request) => request },
          }
        : { ...base, credentials: credentials! },
    );
    if (identity.kind !== 'anonymous')
      log('info', 'credentials', {
        uri: shown,
        source: identity.kind,
        ...(identity.kind === 'web identity' ? { roleArn: identity.roleArn } : {}),
      });
    return client;
  };
  return { connect, identity: () => identity };
}

/** Opens s3://bucket/key: resolves credentials (once for all attempts), then GETs the object. */
export function s3Opener(source: S3Source, env: Env, log: Log, timeoutMs: number): () => Promise<OpenedObject> {
  const shown = redactUri(source.uri);
  const { connect, identity } = s3Connection(env, log, timeoutMs, shown);
  return async () => {
    const s3 = await connect();
    try {
      const out = await s3.send(new GetObjectCommand({ Bucket: source.bucket, Key: source.key }));
      const body = out.Body as Readable | undefined;
      if (!body) throw new FetchError(`${shown}: the store answered without a body`, true);
      return { body, bytes: out.ContentLength };
    } catch (e) {
      if (e instanceof FetchError) throw e;
      const err = e as SdkError;
      const status = err.$metadata?.httpStatusCode;
      // No answer at all: a network error, which download.ts words and retries.
      if (!status) throw e;
      throw s3StatusError(status, err, identity(), shown, env);
    }
  };
}

function credentialError(err: SdkError, identity: Identity, shown: string): FetchError {
  const status = err.$metadata?.httpStatusCode;
  const detail = describe(err);
  if (!status && err.code && /^E[A-Z]+/.test(err.code)) {
    return new FetchError(
      `network error getting AWS credentials for ${shown} (${detail}): check the STS endpoint (AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL) and the pod's network access`,
      true,
    );
  }
  const retryable = status !== undefined && (status === 429 || status >= 500);
  if (identity.kind === 'web identity') {
    const code = sdkCode(err) ?? '';
    const said = `${code} ${err.message ?? ''}`;
    const why = /expired/i.test(said)
      ? 'the ServiceAccount token has expired: a projected token is renewed by the kubelet; check that the token file is a projected serviceAccountToken volume'
      : /\b(aud|azp|audience)\b/i.test(said)
        ? "the token's audience is not one the role trusts: the projected token's audience must be the identity provider's client ID (sts.amazonaws.com on AWS; spec.artifactIdentity.audience)"
        : /verif|signature/i.test(said)
          ? "the token's signature was not accepted: check that the identity provider trusts this cluster's OIDC issuer (its discovery document and signing keys) and that the token file holds the projected token unchanged"
          : /token/i.test(code)
            ? `the ServiceAccount token was refused: check that the role's trust policy names this cluster's OIDC issuer, the pod's ServiceAccount (system:serviceaccount:<namespace>:<name>) and the token's audience`
            : `check that the role exists, that its trust policy allows sts:AssumeRoleWithWebIdentity from this cluster's OIDC issuer for the pod's ServiceAccount, and the token's audience`;
    return new FetchError(
      `could not assume role ${identity.roleArn} with the web identity token ${identity.tokenFile} for ${shown}${status ? ` (${status} ${detail})` : ` (${detail})`}: ${why}`,
      retryable,
    );
  }
  if (identity.kind === 'keys')
    return new FetchError(
      `the artifactSecret's AWS keys could not be used for ${shown} (${detail}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN`,
    );
  return new FetchError(
    `could not get AWS credentials for ${shown} from the pod's environment (${detail}): check the pod's AWS identity (EKS Pod Identity association, IRSA annotation on the ServiceAccount, instance profile), or set spec.artifactSecret to a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
    retryable,
  );
}

function s3StatusError(status: number, err: SdkError, identity: Identity, shown: string, env: Env): FetchError {
  const code = sdkCode(err) ?? '';
  const detail = describe(err);
  let hint: string;
  if (status === 401 || status === 403) {
    if (/ExpiredToken/i.test(code)) {
      hint =
        identity.kind === 'keys'
          ? "the session token has expired: renew the artifactSecret's AWS_SESSION_TOKEN (with its keys)"
          : 'the temporary credentials have expired: the pod retries with new ones when it restarts';
    } else if (identity.kind === 'keys') {
      hint = /InvalidAccessKeyId|SignatureDoesNotMatch/i.test(code)
        ? "check the artifactSecret's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys)"
        : "check that the artifactSecret's AWS keys may s3:GetObject this key (their policy and the bucket policy)";
    } else if (identity.kind === 'web identity') {
      hint = `the role ${identity.roleArn} was assumed but may not read this object: check its permissions policy (s3:GetObject on the bucket and key) and the bucket policy`;
    } else if (identity.kind === 'default chain') {
      hint =
        "check that the pod's AWS identity (EKS Pod Identity association, instance profile) may s3:GetObject this key";
    } else {
      hint =
        'the request was anonymous (no AWS credentials found): set spec.artifactSecret to a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the pod an AWS identity (spec.artifactIdentity.awsRoleArn, IRSA or EKS Pod Identity)';
    }
  } else if (status === 404) {
    hint = `check spec.artifact (bucket and key)${env.AWS_ENDPOINT_URL || env.AWS_ENDPOINT_URL_S3 ? ' and AWS_ENDPOINT_URL' : ' and AWS_REGION'}`;
  } else if (status === 400) {
    hint = "check that AWS_REGION is the bucket's region and that the AWS keys are well-formed";
  } else if (status === 301) {
    hint = "the bucket is in another region: set AWS_REGION in the artifactSecret to the bucket's region";
  } else if (status === 429 || status >= 500) {
    hint = 'the store is failing or throttling; the pod retries when it restarts';
  } else {
    hint = 'the store refused the request: check spec.artifact';
  }
  return new FetchError(
    `${status} ${httpStatusText(status)} fetching ${shown}${detail ? ` (${detail})` : ''}: ${hint}`,
    status === 429 || status >= 500,
  );
}

export const httpStatusText = (status: number) => STATUS_CODES[status] ?? 'Unknown status';
