// gs:// through the Cloud Storage client library and Google's Application Default Credentials.
//
// Credentials, first found wins:
//   1. GOOGLE_OAUTH_ACCESS_TOKEN (an access token, from spec.artifactSecret);
//   2. GOOGLE_APPLICATION_CREDENTIALS_JSON (a key file's content, from spec.artifactSecret);
//   3. Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS (a key file's path), GKE
//      Workload Identity and other metadata-server credentials.
// STORAGE_EMULATOR_HOST points at an emulator (requests are not authenticated); GCS_ENDPOINT_URL at
// another endpoint of the JSON API (requests are authenticated as above).
import type { Readable } from 'node:stream';
import { Storage, type StorageOptions } from '@google-cloud/storage';
import { OAuth2Client } from 'google-auth-library';
import { FetchError } from './errors.ts';
import type { OpenedObject } from './download.ts';
import type { Env, Log } from './log.ts';
import { httpStatusText } from './s3.ts';
import { redactUri, type ArtifactSource } from './uri.ts';

type GsSource = Extract<ArtifactSource, { scheme: 'gs' }>;
export type Identity = 'access token' | 'key' | 'default credentials' | 'emulator';

interface GoogleError {
  code?: number | string;
  status?: number;
  message?: string;
  response?: { status?: number; data?: unknown };
}

function endpointOf(name: string, value: string): string {
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
    return url.href.replace(/\/+$/, '');
  } catch {
    throw new FetchError(`invalid ${name} ${redactUri(value)}: expected a URL such as http://gcs-emulator:4443`);
  }
}

/**
 * A Cloud Storage client for `shown` (a URI, for messages) with the credentials above. Shared with the
 * model agent's capture writer, so that both read the same environment.
 */
export function gcsStorage(
  env: Env,
  log: Log,
  timeoutMs: number,
  shown: string,
): { storage: Storage; identity: Identity } {
  const options: StorageOptions = { retryOptions: { autoRetry: false }, timeout: timeoutMs };
  let identity: Identity;
  if (env.STORAGE_EMULATOR_HOST) {
    options.apiEndpoint = endpointOf('STORAGE_EMULATOR_HOST', env.STORAGE_EMULATOR_HOST);
    identity = 'emulator';
  } else {
    if (env.GCS_ENDPOINT_URL) {
      options.apiEndpoint = endpointOf('GCS_ENDPOINT_URL', env.GCS_ENDPOINT_URL);
      options.useAuthWithCustomEndpoint = true;
    }
    if (env.GOOGLE_OAUTH_ACCESS_TOKEN) {
      const client = new OAuth2Client();
      client.setCredentials({ access_token: env.GOOGLE_OAUTH_ACCESS_TOKEN });
      options.authClient = client;
      identity = 'access token';
    } else if (env.GOOGLE_APPLICATION_CREDENTIALS_JSON) {
      try {
        // Deprecated for configurations from untrusted sources; this one is the user's own Secret (issue: move to an authClient).
        // eslint-disable-next-line @typescript-eslint/no-deprecated
        options.credentials = JSON.parse(env.GOOGLE_APPLICATION_CREDENTIALS_JSON) as StorageOptions['credentials'];
      } catch {
        throw new FetchError(
          `the artifactSecret's GOOGLE_APPLICATION_CREDENTIALS_JSON is not JSON: it must hold a service account key file's content (fetching ${shown})`,
        );
      }
      identity = 'key';
    } else {
      identity = 'default credentials';
    }
  }
  log('info', 'credentials', { uri: shown, source: identity });
  // The client library would take STORAGE_EMULATOR_HOST from the process's environment as its whole
  // base URL, without the API's /storage/v1 path: the endpoint is passed as apiEndpoint instead.
  const emulatorHost = process.env.STORAGE_EMULATOR_HOST;
  delete process.env.STORAGE_EMULATOR_HOST;
  let storage: Storage;
  try {
    storage = new Storage(options);
  } finally {
    if (emulatorHost !== undefined) process.env.STORAGE_EMULATOR_HOST = emulatorHost;
  }
  return { storage, identity };
}

/** Opens gs://bucket/object: its metadata first (size, and a clear refusal), then its media. */
export function gcsOpener(
  source: GsSource,
  env: Env,
  log: Log,
  timeoutMs: number,
): { open: () => Promise<OpenedObject>; translate: (e: unknown) => FetchError | undefined } {
  const shown = redactUri(source.uri);
  const { storage, identity } = gcsStorage(env, log, timeoutMs, shown);
  const file = storage.bucket(source.bucket).file(source.object);
  const translate = (e: unknown) => gcsError(e as GoogleError, identity, shown, env);

  const open = async (): Promise<OpenedObject> => {
    let size: number | undefined;
    try {
      const [metadata] = await file.getMetadata();
      size = metadata.size === undefined ? undefined : Number(metadata.size);
    } catch (e) {
      throw translate(e) ?? e;
    }
    // As stored: no transcoding of gzip-encoded objects, so that the digest is of the stored bytes.
    const body: Readable = file.createReadStream({ decompress: false, validation: false });
    return { body, bytes: Number.isSafeInteger(size) ? size : undefined };
  };
  return { open, translate };
}

function gcsError(err: GoogleError, identity: Identity, shown: string, env: Env): FetchError | undefined {
  const status = typeof err.code === 'number' ? err.code : (err.status ?? err.response?.status);
  const message = (err.message ?? '').split('\n')[0].slice(0, 300);
  if (/could not load the default credentials|unable to detect a project id/i.test(message)) {
    return new FetchError(
      `no Google credentials for ${shown} (${message}): give the pod's ServiceAccount a Google identity (GKE Workload Identity), set GOOGLE_APPLICATION_CREDENTIALS, or set spec.artifactSecret to a Secret with GOOGLE_APPLICATION_CREDENTIALS_JSON (a service account key) or GOOGLE_OAUTH_ACCESS_TOKEN; a public object can be fetched as https://storage.googleapis.com/<bucket>/<object>`,
    );
  }
  if (!status) {
    if (typeof err.code === 'string' && /^E[A-Z]+/.test(err.code)) return undefined; // a network error: download.ts words it
    if (/invalid_grant|invalid_client|unauthorized_client|token/i.test(message)) {
      return new FetchError(
        `could not get a Google access token for ${shown} (${message}): check the ${identity === 'key' ? "artifactSecret's GOOGLE_APPLICATION_CREDENTIALS_JSON key (it may be deleted or disabled)" : "pod's Google identity (Workload Identity binding of its ServiceAccount)"}`,
      );
    }
    return undefined;
  }
  let hint: string;
  if (status === 401 || status === 403) {
    hint =
      identity === 'access token'
        ? "check the artifactSecret's GOOGLE_OAUTH_ACCESS_TOKEN (access tokens expire after about an hour) and the bucket's IAM permissions"
        : identity === 'key'
          ? "check that the service account of the artifactSecret's GOOGLE_APPLICATION_CREDENTIALS_JSON may read the object (roles/storage.objectViewer on the bucket)"
          : identity === 'default credentials'
            ? "check that the pod's Google identity (Workload Identity, GOOGLE_APPLICATION_CREDENTIALS) may read the object (roles/storage.objectViewer on the bucket)"
            : 'the emulator refused the request';
  } else if (status === 404) {
    hint = `check spec.artifact (bucket and object)${env.STORAGE_EMULATOR_HOST || env.GCS_ENDPOINT_URL ? ' and the endpoint' : ''}`;
  } else if (status === 429 || status >= 500) {
    hint = 'the store is failing or throttling; the pod retries when it restarts';
  } else {
    hint = 'the store refused the request: check spec.artifact';
  }
  return new FetchError(
    `${status} ${httpStatusText(status)} fetching ${shown}${message ? ` (${message})` : ''}: ${hint}`,
    status === 429 || status >= 500,
  );
}
