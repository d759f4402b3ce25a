// Proves the local control plane is a real Kubernetes: Deployments become Available on kwok's fake
// nodes, Istio's CRD schemas validate, RBAC denies what it should. Everything the product is tested
// against later rests on this.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../ci/wait.ts';
import { adminConfig, apiError, createNamespace, deleteNamespace } from './kube.ts';

const kc = adminConfig();
let namespace: string;

beforeAll(async () => {
  namespace = await createNamespace(kc, 'control-plane');
});
afterAll(async () => {
  await deleteNamespace(kc, namespace);
});

describe('the local control plane', () => {
  it('runs a Deployment of 2 replicas until it is Available', async () => {
    const apps = kc.makeApiClient(k8s.AppsV1Api);
    const labels = { app: 'web' };
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: { containers: [{ name: 'web', image: 'registry.example/web:1', readinessProbe: { httpGet: { path: '/', port: 8080 } } }] },
          },
        },
      },
    });
    const deployment = await waitFor('Deployment web to be Available', 60_000, async () => {
      const d = await apps.readNamespacedDeployment({ name: 'web', namespace });
      const available = d.status?.conditions?.find((c) => c.type === 'Available')?.status === 'True';
      return available && d.status?.readyReplicas === 2 ? d : undefined;
    });
    expect(deployment.status?.availableReplicas).toBe(2);
    const pods = await kc.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace, labelSelector: 'app=web' });
    expect(pods.items.map((p) => p.status?.phase)).toEqual(['Running', 'Running']);
    expect(pods.items.every((p) => p.spec?.nodeName?.startsWith('kwok-node-'))).toBe(true);
  });

  it("accepts a valid VirtualService and rejects one that breaks Istio's schema", async () => {
    const objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    const virtualService = (http: unknown) => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'vs', namespace },
      spec: { hosts: ['model.example.com'], gateways: ['model-gw'], http },
    });
    const valid = [{ route: [{ destination: { host: 'a', port: { number: 80 } }, weight: 100 }] }];
    await objects.create(virtualService(valid));
    const invalid = [{ route: [{ destination: { host: 'a' }, weight: 'all of it' }] }];
    const error = await apiError(objects.create({ ...virtualService(invalid), metadata: { name: 'vs-bad', namespace } }));
    expect(error?.code).toBe(422);
    expect(error?.message).toMatch(/weight/);
  });

  it('denies a ServiceAccount that has no rights', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'nobody' } } });
    const token = await core.createNamespacedServiceAccountToken({ name: 'nobody', namespace, body: { spec: { audiences: [] } } });
    const restricted = new k8s.KubeConfig();
    restricted.loadFromOptions({
      clusters: kc.clusters,
      users: [{ name: 'nobody', token: token.status!.token }],
      contexts: [{ name: 'nobody', cluster: kc.getCurrentCluster()!.name, user: 'nobody' }],
      currentContext: 'nobody',
    });
    const error = await apiError(restricted.makeApiClient(k8s.CoreV1Api).listNamespacedSecret({ namespace }));
    expect(error?.code).toBe(403);
    expect(error?.message).toContain(`system:serviceaccount:${namespace}:nobody`);
  });

  it('stops every process and removes its directory on Ctrl-C', async () => {
    const before = new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('ml-operator-cluster-')));
    const child = spawn(process.execPath, ['ci/cluster/main.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await waitFor('npm run cluster to be ready', 90_000, async () => (output.includes('KUBECONFIG=') ? true : undefined), () => output);
    const dir = [...readdirSync(tmpdir()).filter((d) => d.startsWith('ml-operator-cluster-'))].find((d) => !before.has(d));
    expect(dir).toBeDefined();
    const pidsLine = output.match(/pids: ([\d ]+)/);
    expect(pidsLine).not.toBeNull();
    const pids = pidsLine![1].trim().split(' ').map(Number);
    expect(pids).toHaveLength(5);
    child.kill('SIGINT');
    await exited;
    for (const pid of pids) expect(() => process.kill(pid, 0), `process ${pid} is still running`).toThrow();
    expect(existsSync(join(tmpdir(), dir!))).toBe(false);
  });
});
