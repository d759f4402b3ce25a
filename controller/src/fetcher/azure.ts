// Azure Blob Storage (azure://<account>/<container>/<blob>, https://<account>.blob.core.windows.net/...)
// through the Blob client library and Azure Identity.
//
// Credentials, first found wins:
//   1. AZURE_STORAGE_CONNECTION_STRING (from spec.artifactSecret; it names its own endpoint);
//   2. AZURE_STORAGE_KEY, the account's shared key (from spec.artifactSecret);
//   3. a SAS: the query of an https:// blob URL, or AZURE_STORAGE_SAS_TOKEN;
//   4. DefaultAzureCredential: AKS workload identity (AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID,
//      AZURE_TENANT_ID), a service principal's AZURE_CLIENT_SECRET, managed identity.
// AZURE_STORAGE_BLOB_ENDPOINT replaces https://<account>.blob.core.windows.net, for Azurite
// (http://azurite:10000/<account>) or a private endpoint.
import type { Readable } from 'node:stream';
import { DefaultAzureCredential } from '@azure/identity';
import {
  AnonymousCredential,
  BlobServiceClient,
  StorageSharedKeyCredential,
  type BlobClient,
} from '@azure/storage-blob';
import { FetchError } from './errors.ts';
import type { OpenedObject } from './download.ts';
import type { Env, Log } from './log.ts';
import { httpStatusText } from './s3.ts';
import { redactUri, type ArtifactSource } from './uri.ts';

type AzureSource = Extract<ArtifactSource, { scheme: 'azure' }>;
export type Identity = 'connection string' | 'account key' | 'SAS' | 'default credential';

interface AzureError {
  name?: string;
  code?: string;
  statusCode?: number;
  message?: string;
}

/**
 * A Blob service client for `account` with the credentials above (`sas`: one from the URI, if any).
 * Shared with the model agent's capture writer, so that both read the same environment.
 */
export function azureService(
  account: string,
  sasFromUri: string,
  env: Env,
  log: Log,
  timeoutMs: number,
  shown: string,
): { service: BlobServiceClient; identity: Identity } {
  let serviceUrl = `https://${account}.blob.core.windows.net`;
  if (env.AZURE_STORAGE_BLOB_ENDPOINT) {
    try {
      const url = new URL(env.AZURE_STORAGE_BLOB_ENDPOINT);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
      serviceUrl = url.href.replace(/\/+$/, '');
    } catch {
      throw new FetchError(
        `invalid AZURE_STORAGE_BLOB_ENDPOINT ${redactUri(env.AZURE_STORAGE_BLOB_ENDPOINT)}: expected a URL such as http://azurite:10000/devstoreaccount1`,
      );
    }
  }
  const sas = (sasFromUri || env.AZURE_STORAGE_SAS_TOKEN || '').replace(/^\?/, '');
  // One try per attempt: download.ts retries, with the same messages for every source.
  const options = { retryOptions: { maxTries: 1, tryTimeoutInMs: timeoutMs } };
  let identity: Identity;
  let service: BlobServiceClient;
  try {
    if (env.AZURE_STORAGE_CONNECTION_STRING) {
      identity = 'connection string';
      service = BlobServiceClient.fromConnectionString(env.AZURE_STORAGE_CONNECTION_STRING, options);
    } else if (env.AZURE_STORAGE_KEY) {
      identity = 'account key';
      service = new BlobServiceClient(
        serviceUrl,
        new StorageSharedKeyCredential(env.AZURE_STORAGE_ACCOUNT || account, env.AZURE_STORAGE_KEY),
        options,
      );
    } else if (sas) {
      identity = 'SAS';
      service = new BlobServiceClient(`${serviceUrl}?${sas}`, new AnonymousCredential(), options);
    } else {
      identity = 'default credential';
      service = new BlobServiceClient(serviceUrl, new DefaultAzureCredential(), options);
    }
  } catch (e) {
    // A malformed connection string or key is refused here, before any request.
    throw new FetchError(
      `the artifactSecret's Azure credentials for ${shown} are malformed (${(e as Error).message.split('\n')[0]}): check AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_KEY`,
    );
  }
  log('info', 'credentials', { uri: shown, source: identity });
  return { service, identity };
}

/** Opens the blob: one GET, whose headers give the size and whose body streams. */
export function azureOpener(source: AzureSource, env: Env, log: Log, timeoutMs: number): () => Promise<OpenedObject> {
  const shown = redactUri(source.uri);
  const { service, identity } = azureService(
    source.account,
    source.url?.search.slice(1) ?? '',
    env,
    log,
    timeoutMs,
    shown,
  );
  const blob: BlobClient = service.getContainerClient(source.container).getBlobClient(source.blob);

  return async () => {
    try {
      // maxRetryRequests 0: a broken body is retried by download.ts, like any other source.
      const res = await blob.download(0, undefined, { maxRetryRequests: 0 });
      if (!res.readableStreamBody) throw new FetchError(`${shown}: the store answered without a body`, true);
      // In Node.js the body is an http.IncomingMessage, a Readable.
      return { body: res.readableStreamBody as Readable, bytes: res.contentLength };
    } catch (e) {
      if (e instanceof FetchError) throw e;
      throw azureError(e as AzureError, identity, shown, env) ?? e;
    }
  };
}

function azureError(err: AzureError, identity: Identity, shown: string, env: Env): FetchError | undefined {
  const message = (err.message ?? '').split('\n')[0].slice(0, 300);
  if (
    err.name === 'CredentialUnavailableError' ||
    err.name === 'AggregateAuthenticationError' ||
    err.name === 'AuthenticationError'
  ) {
    return new FetchError(
      `could not get Azure credentials for ${shown} (${err.name}: ${message}): give the pod an Azure identity (AKS workload identity: a ServiceAccount with azure.workload.identity/client-id and pods labelled azure.workload.identity/use, or a managed identity), or set spec.artifactSecret to a Secret with AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_KEY`,
    );
  }
  const status = err.statusCode;
  if (!status) return undefined; // a network error: download.ts words it
  const code = err.code && err.code !== String(status) ? err.code : '';
  let hint: string;
  if (status === 401 || status === 403) {
    hint =
      identity === 'connection string'
        ? "check the artifactSecret's AZURE_STORAGE_CONNECTION_STRING (its AccountKey or SharedAccessSignature)"
        : identity === 'account key'
          ? "check the artifactSecret's AZURE_STORAGE_KEY: it must be a current key of the storage account named in spec.artifact"
          : identity === 'SAS'
            ? 'check the SAS: its signature, expiry (se) and permissions (sp must include r)'
            : "check that the pod's Azure identity has a data role on the container (Storage Blob Data Reader)";
  } else if (status === 404) {
    hint = `check spec.artifact (account, container and blob)${env.AZURE_STORAGE_BLOB_ENDPOINT ? ' and AZURE_STORAGE_BLOB_ENDPOINT' : ''}`;
  } else if (status === 429 || status >= 500) {
    hint = 'the store is failing or throttling; the pod retries when it restarts';
  } else {
    hint = 'the store refused the request: check spec.artifact';
  }
  const detail = [code, message].filter(Boolean).join(': ');
  return new FetchError(
    `${status} ${httpStatusText(status)} fetching ${shown}${detail ? ` (${detail})` : ''}: ${hint}`,
    status === 429 || status >= 500,
  );
}
