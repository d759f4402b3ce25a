// Real object stores for the artifact fetcher's and the model agent's tests: MinIO (S3, and STS with
// web identity), fake-gcs-server (the Cloud Storage JSON API) and Azurite (Azure Blob). Each listens
// on 127.0.0.1 (or the address given) on a free port, keeps its data in a temporary directory, and is
// stopped by stop().
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { log } from './log.ts';
import { freePort } from './processes.ts';
import { ensureTools, toolPath } from './tools/build.ts';
import { waitFor } from './wait.ts';

export interface RunningStore {
  /** The base URL, http://<address>:<port>. */
  url: string;
  port: number;
  /** The end of the server's output, for failure messages. */
  logTail: () => string;
  /** Freezes the server (SIGSTOP): connections are accepted by the kernel and never answered, as a store that hangs. */
  freeze(): void;
  /** Lets a frozen server go on (SIGCONT). */
  thaw(): void;
  stop(): Promise<void>;
}

function startProcess(
  name: string,
  command: string,
  args: string[],
  env: Record<string, string>,
  dir: string,
  port: number,
  ready: (url: string) => Promise<boolean>,
  address = '127.0.0.1',
): Promise<RunningStore> {
  const url = `http://${address}:${port}`;
  const child: ChildProcess = spawn(command, args, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (c: Buffer) => (output = (output + c.toString()).slice(-8000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // An owner that exits without stop() leaves no server behind.
  const killNow = () => child.kill('SIGKILL');
  process.on('exit', killNow);
  void exited.then(() => process.off('exit', killNow));
  const store: RunningStore = {
    url,
    port,
    logTail: () => `${name} output:\n${output}`,
    freeze: () => child.kill('SIGSTOP'),
    thaw: () => child.kill('SIGCONT'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const started = Date.now();
  // A server that exits while starting fails at once, with its output.
  const died = exited.then(() => {
    throw new Error(
      `${name} exited with ${child.exitCode ?? child.signalCode} while starting: ${command} ${args.join(' ')}\n${store.logTail()}`,
    );
  });
  return Promise.race([
    waitFor(`${name} on ${url}`, 60_000, async () => ((await ready(url)) ? store : undefined), store.logTail),
    died,
  ])
    .then((s) => {
      log(`object stores: ${name} ready on ${url} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      return s;
    })
    .catch(async (err: unknown) => {
      await store.stop();
      throw err;
    });
}

const answers = async (url: string) => {
  try {
    await fetch(url, { signal: AbortSignal.timeout(2000) });
    return true;
  } catch {
    return false;
  }
};

export const minioRoot = { user: 'minio-root', password: 'minio-root-secret-0123456789' };

export interface MinioOptions {
  /**
   * The address to listen on: 127.0.0.1, or the host's side of the local cluster's veth pair
   * (network.hostAddress) for model pods, which run in the cluster's network namespace.
   */
  address?: string;
  /**
   * Run inside a network namespace (nsenter), listening on `address` there, port 9000: the local
   * cluster's own, whose real node's containers reach it as they reach the artifact server.
   */
  inNetwork?: { namespace: string; address: string };
  /**
   * An OpenID Connect provider whose tokens MinIO's STS accepts (AssumeRoleWithWebIdentity) for
   * the role it derives from `clientId`, with the `rolePolicy` (a canned policy such as readonly).
   */
  openId?: { configUrl: string; clientId: string; rolePolicy: string; caFile: string };
}

/** MinIO as an S3 server (root user minioRoot), and its STS when `openId` is given. */
export async function startMinio(options: MinioOptions = {}): Promise<RunningStore> {
  await ensureTools({ only: ['minio'] });
  const dir = mkdtempSync(join(tmpdir(), 'ml-operator-minio-'));
  const certs = join(dir, 'certs');
  mkdirSync(join(certs, 'CAs'), { recursive: true });
  const env: Record<string, string> = {
    MINIO_ROOT_USER: minioRoot.user,
    MINIO_ROOT_PASSWORD: minioRoot.password,
    MINIO_BROWSER: 'off',
    MINIO_UPDATE: 'off',
  };
  if (options.openId) {
    // MinIO trusts the CAs in <certs>/CAs/ (here: the local API server's) for the provider's discovery and keys.
    writeFileSync(join(certs, 'CAs', 'provider-ca.crt'), readFileSync(options.openId.caFile));
    Object.assign(env, {
      MINIO_IDENTITY_OPENID_CONFIG_URL: options.openId.configUrl,
      MINIO_IDENTITY_OPENID_CLIENT_ID: options.openId.clientId,
      MINIO_IDENTITY_OPENID_ROLE_POLICY: options.openId.rolePolicy,
    });
  }
  // The namespace's ports are its own: a fixed one there.
  const port = options.inNetwork ? 9000 : await freePort();
  const address = options.inNetwork?.address ?? options.address ?? '127.0.0.1';
  const server = ['server', '--quiet', '--address', `${address}:${port}`, '--certs-dir', certs, join(dir, 'data')];
  return startProcess(
    'minio',
    options.inNetwork ? 'nsenter' : toolPath('minio'),
    options.inNetwork ? [`--net=/run/netns/${options.inNetwork.namespace}`, toolPath('minio'), ...server] : server,
    env,
    dir,
    port,
    async (url) => {
      const res = await fetch(`${url}/minio/health/ready`, { signal: AbortSignal.timeout(2000) }).catch(
        () => undefined,
      );
      return res?.status === 200;
    },
    address,
  );
}

/**
 * fake-gcs-server with `objects` preloaded: keys are `<bucket>/<object>`. Serves the JSON API at
 * its URL (for STORAGE_EMULATOR_HOST), on `address` (as MinioOptions.address says).
 */
export async function startFakeGcs(
  objects: Record<string, Buffer | string>,
  address = '127.0.0.1',
): Promise<RunningStore> {
  await ensureTools();
  const dir = mkdtempSync(join(tmpdir(), 'ml-operator-fake-gcs-'));
  for (const [path, content] of Object.entries(objects)) {
    const file = join(dir, 'data', path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  mkdirSync(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const url = `http://${address}:${port}`;
  return startProcess(
    'fake-gcs-server',
    toolPath('fake-gcs-server'),
    [
      '-scheme',
      'http',
      '-host',
      address,
      '-port',
      String(port),
      '-backend',
      'memory',
      '-data',
      join(dir, 'data'),
      '-public-host',
      `${address}:${port}`,
      '-external-url',
      url,
      '-log-level',
      'warn',
    ],
    {},
    dir,
    port,
    async (u) => {
      const res = await fetch(`${u}/storage/v1/b`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
      return res?.status === 200;
    },
    address,
  );
}

/** Azurite's well-known development account (its documented default). */
export const azuriteAccount = {
  name: 'devstoreaccount1',
  key: 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
};

/** Azurite's Blob service on `address` (as MinioOptions.address says); its account's service URL is `${url}/${azuriteAccount.name}`. */
export async function startAzurite(address = '127.0.0.1'): Promise<RunningStore> {
  const dir = mkdtempSync(join(tmpdir(), 'ml-operator-azurite-'));
  const main = join(
    dirname(createRequire(import.meta.url).resolve('azurite/package.json')),
    'dist',
    'src',
    'blob',
    'main.js',
  );
  const port = await freePort();
  return startProcess(
    'azurite',
    process.execPath,
    [
      main,
      '--blobHost',
      address,
      '--blobPort',
      String(port),
      '--silent',
      '--skipApiVersionCheck',
      '--disableTelemetry',
      '--inMemoryPersistence',
    ],
    {},
    dir,
    port,
    answers,
    address,
  );
}
