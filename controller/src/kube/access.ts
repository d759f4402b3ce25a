// How the controller reaches the API server. The common cases (in-cluster ServiceAccount, and
// kubeconfig files with a token or a client certificate) are read here, because loading
// @kubernetes/client-node's KubeConfig pulls in every generated API client (about 80 MiB of resident
// memory, half of the controller's). Anything else (exec plugins, auth providers, several kubeconfig
// files) is handed to client-node's KubeConfig, loaded only then.
import { readFileSync } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import type { RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

/** What KubeClient needs: the server, and TLS options and headers for each request. */
export interface ClusterAccess {
  getCurrentCluster(): { server: string } | null;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

export const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';

interface Credentials {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure?: boolean;
  /** Read at each call: bound ServiceAccount tokens are rotated on disk. */
  token?: () => string;
}

class StaticAccess implements ClusterAccess {
  private readonly credentials: Credentials;

  constructor(credentials: Credentials) {
    this.credentials = credentials;
  }

  getCurrentCluster() {
    return { server: this.credentials.server };
  }

  async applyToHTTPSOptions(opts: RequestOptions): Promise<void> {
    const c = this.credentials;
    if (c.ca) opts.ca = c.ca;
    if (c.cert) opts.cert = c.cert;
    if (c.key) opts.key = c.key;
    if (c.insecure) opts.rejectUnauthorized = false;
    const token = c.token?.();
    // Headers as an object: RequestOptions also allows a raw [name, value, ...] list, which no caller passes.
    if (token)
      opts.headers = { ...(opts.headers as OutgoingHttpHeaders | undefined), Authorization: `Bearer ${token}` };
  }
}

function inCluster(env: NodeJS.ProcessEnv, dir: string): ClusterAccess | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) return undefined;
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new StaticAccess({
    server,
    ca: readFileSync(join(dir, 'ca.crt')),
    token: () => readFileSync(join(dir, 'token'), 'utf8').trim(),
  });
}

interface NamedEntry<T> {
  name: string;
  [key: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

function fromFileOrData(base: Record<string, unknown>, file: string, data: string): Buffer | undefined {
  if (typeof base[data] === 'string') return Buffer.from(base[data], 'base64');
  if (typeof base[file] === 'string') return readFileSync(base[file]);
  return undefined;
}

/** Reads a kubeconfig file; undefined when it needs more than a token or a client certificate. */
export function fromKubeconfig(path: string): ClusterAccess | undefined {
  const config = parse(readFileSync(path, 'utf8')) as {
    'current-context'?: string;
    contexts?: NamedEntry<{ cluster: string; user: string }>[];
    clusters?: NamedEntry<Record<string, unknown>>[];
    users?: NamedEntry<Record<string, unknown>>[];
  };
  const context = config.contexts?.find((c) => c.name === config['current-context'])?.context;
  if (!context)
    throw new Error(`${path}: current-context ${JSON.stringify(config['current-context'])} is not among its contexts`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster || typeof cluster.server !== 'string')
    throw new Error(`${path}: cluster ${JSON.stringify(context.cluster)} has no server`);
  const user = config.users?.find((u) => u.name === context.user)?.user ?? {};
  const simple = new Set([
    'token',
    'tokenFile',
    'client-certificate',
    'client-certificate-data',
    'client-key',
    'client-key-data',
  ]);
  if (Object.keys(user).some((k) => !simple.has(k)) || cluster['proxy-url']) return undefined;
  const token = typeof user.token === 'string' ? user.token : undefined;
  const tokenFile = typeof user.tokenFile === 'string' ? user.tokenFile : undefined;
  return new StaticAccess({
    server: cluster.server,
    ca: fromFileOrData(cluster, 'certificate-authority', 'certificate-authority-data'),
    cert: fromFileOrData(user, 'client-certificate', 'client-certificate-data'),
    key: fromFileOrData(user, 'client-key', 'client-key-data'),
    insecure: cluster['insecure-skip-tls-verify'] === true,
    token: token ? () => token : tokenFile ? () => readFileSync(tokenFile, 'utf8').trim() : undefined,
  });
}

/**
 * In-cluster when running in a pod, else the kubeconfig named by KUBECONFIG (or ~/.kube/config),
 * as kubectl would choose.
 */
export async function loadClusterAccess(
  env: NodeJS.ProcessEnv = process.env,
  dir = serviceAccountDir,
): Promise<ClusterAccess> {
  const kubeconfig = env.KUBECONFIG;
  if (!kubeconfig) {
    const access = inCluster(env, dir);
    if (access) return access;
  }
  const path = kubeconfig ?? join(homedir(), '.kube', 'config');
  const simple = path.includes(':') ? undefined : fromKubeconfig(path);
  if (simple) return simple;
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (path.includes(':')) kc.loadFromDefault();
  else kc.loadFromFile(path);
  return kc;
}
