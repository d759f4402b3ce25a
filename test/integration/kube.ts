// Helpers for integration tests: a client for the run's control plane and a namespace per test file.
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { inject } from 'vitest';

export function adminConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  return kc;
}

/** Creates a namespace named after `prefix` with a random suffix; returns its name. */
export async function createNamespace(kc: k8s.KubeConfig, prefix: string, labels: Record<string, string> = {}): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

export async function deleteNamespace(kc: k8s.KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(k8s.CoreV1Api).deleteNamespace({ name });
}

/** The status code of a failed API call, or undefined when the call succeeded. */
export async function apiError(call: Promise<unknown>): Promise<{ code: number; message: string } | undefined> {
  try {
    await call;
    return undefined;
  } catch (err) {
    if (err instanceof k8s.ApiException) {
      const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      return { code: err.code, message: body?.message ?? String(err.body) };
    }
    throw err;
  }
}
