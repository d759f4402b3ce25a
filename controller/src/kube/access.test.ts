import { mkdtempSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadClusterAccess } from './access.ts';

const dir = () => mkdtempSync(join(tmpdir(), 'access-'));
const kubeconfig = (user: Record<string, unknown>, cluster: Record<string, unknown> = {}) => {
  const path = join(dir(), 'config');
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'c',
      contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
      clusters: [
        {
          name: 'k',
          cluster: {
            server: 'https://127.0.0.1:6443',
            'certificate-authority-data': Buffer.from('CA').toString('base64'),
            ...cluster,
          },
        },
      ],
      users: [{ name: 'u', user }],
    }),
  );
  return path;
};
async function options(env: NodeJS.ProcessEnv, saDir?: string): Promise<RequestOptions & { server?: string }> {
  const access = await loadClusterAccess(env, saDir);
  const opts: RequestOptions = {};
  await access.applyToHTTPSOptions(opts);
  return { ...opts, server: access.getCurrentCluster()?.server };
}

describe('loadClusterAccess', () => {
  it('uses the ServiceAccount in a pod, re-reading the token each time', async () => {
    const sa = dir();
    writeFileSync(join(sa, 'ca.crt'), 'CA');
    writeFileSync(join(sa, 'token'), 'first\n');
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    const access = await loadClusterAccess(env, sa);
    const first: RequestOptions = {};
    await access.applyToHTTPSOptions(first);
    expect(first.headers).toEqual({ Authorization: 'Bearer first' });
    expect(String(first.ca)).toBe('CA');
    expect(access.getCurrentCluster()?.server).toBe('https://10.96.0.1:443');
    writeFileSync(join(sa, 'token'), 'rotated');
    const second: RequestOptions = {};
    await access.applyToHTTPSOptions(second);
    expect(second.headers).toEqual({ Authorization: 'Bearer rotated' });
  });
  it('reads a kubeconfig with a token', async () => {
    const o = await options({ KUBECONFIG: kubeconfig({ token: 'secret' }) });
    expect(o.server).toBe('https://127.0.0.1:6443');
    expect(o.headers).toEqual({ Authorization: 'Bearer secret' });
    expect(String(o.ca)).toBe('CA');
  });
  it('reads a kubeconfig with a client certificate', async () => {
    const o = await options({
      KUBECONFIG: kubeconfig({
        'client-certificate-data': Buffer.from('CERT').toString('base64'),
        'client-key-data': Buffer.from('KEY').toString('base64'),
      }),
    });
    expect(String(o.cert)).toBe('CERT');
    expect(String(o.key as Buffer)).toBe('KEY');
    expect(o.headers).toBeUndefined();
  });
  it('prefers KUBECONFIG to the in-cluster ServiceAccount, as kubectl does', async () => {
    const o = await options(
      {
        KUBECONFIG: kubeconfig({ token: 'from-file' }),
        KUBERNETES_SERVICE_HOST: '10.96.0.1',
        KUBERNETES_SERVICE_PORT: '443',
      },
      '/nonexistent',
    );
    expect(o.headers).toEqual({ Authorization: 'Bearer from-file' });
  });
  it('hands an exec plugin to client-node', async () => {
    const access = await loadClusterAccess({
      ...process.env,
      KUBECONFIG: kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' } }),
    });
    expect(access.constructor.name).toBe('KubeConfig');
    expect(access.getCurrentCluster()?.server).toBe('https://127.0.0.1:6443');
  });
  it('names the context that does not exist', async () => {
    const path = join(dir(), 'config');
    writeFileSync(path, JSON.stringify({ 'current-context': 'gone', contexts: [] }));
    await expect(loadClusterAccess({ KUBECONFIG: path })).rejects.toThrow(
      /current-context "gone" is not among its contexts/,
    );
  });
});
