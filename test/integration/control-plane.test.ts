// Proves the local cluster is a real Kubernetes with a real data plane: Deployments become Available
// only when their pods answer their readiness probes on their own addresses, requests reach them
// through the gateway, Istio's CRD schemas validate, RBAC denies what it should. Everything the
// product is tested against later rests on this.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startLoad } from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import { adminConfig, apiError, createNamespace, deleteNamespace } from './kube.ts';
import { execOkSync } from '../../ci/exec.ts';

const kc = adminConfig();
let namespace: string;

beforeAll(async () => {
  namespace = await createNamespace(kc, 'control-plane');
});
afterAll(async () => {
  await deleteNamespace(kc, namespace);
});

describe('the local control plane', () => {
  it('runs a Deployment of 2 replicas on their own addresses until their readiness probes pass', async () => {
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
            metadata: { labels: { ...labels, 'ml-operator.dev/model-instance': 'web-1' } },
            spec: {
              containers: [
                {
                  name: 'web',
                  image: 'registry.example/web:1',
                  readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
                },
              ],
            },
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
    for (const p of pods.items)
      expect(p.status?.podIP, "an address of its node's /24").toMatch(
        new RegExp(`^198\\.18\\.${p.spec!.nodeName!.split('-').at(-1)}\\.\\d+$`),
      );
  });

  it('routes a request through the gateway to a pod, which names itself in the answer', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'web' },
        spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
      },
    });
    const g = inject('gateway');
    const objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    await objects.create({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web', namespace },
      spec: {
        parentRefs: [{ name: g.shared.name, namespace: g.shared.namespace }],
        hostnames: ['web.example.com'],
        rules: [{ backendRefs: [{ name: 'web', port: 80 }] }],
      },
    });
    const pods = (await core.listNamespacedPod({ namespace, labelSelector: 'app=web' })).items.map(
      (p) => p.metadata!.name,
    );
    const answer = await waitFor('an answer through the gateway', 30_000, async () => {
      const run = startLoad({
        url: `http://${g.address}:${g.port}/predict`,
        host: 'web.example.com',
        requests: 1,
        concurrency: 1,
        maxDurationMs: 5000,
      });
      await run.done;
      return run.samples[0].status === 200 ? run.samples[0].backend : undefined;
    });
    expect(pods).toContain(answer.pod);
    expect(answer.instance).toBe('web-1');
  });

  it('keeps a pod whose server fails its readiness probe out of Ready, and one whose artifact cannot be fetched in Init', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const container = (env: Record<string, string>) => ({
      name: 'server',
      image: 'registry.example/model:1',
      ports: [{ name: 'http', containerPort: 8080 }],
      env: Object.entries(env).map(([name, value]) => ({ name, value })),
      readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
    });
    await core.createNamespacedPod({
      namespace,
      body: { metadata: { name: 'never-ready' }, spec: { containers: [container({ DEMO_READY: 'false' })] } },
    });
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'no-artifact' },
        spec: {
          initContainers: [
            {
              name: 'fetch-artifact',
              image: 'ml-operator/controller:1',
              command: ['node', '/app/dist/fetcher/main.js'],
              args: ['https://models.example.com/missing.tar.gz', '/opt/ml/model'],
              volumeMounts: [{ name: 'model', mountPath: '/opt/ml/model' }],
            },
          ],
          containers: [container({})],
          volumes: [{ name: 'model', emptyDir: {} }],
        },
      },
    });
    const init = await waitFor('the fetcher to fail', 60_000, async () => {
      const p = await core.readNamespacedPod({ name: 'no-artifact', namespace });
      return (
        p.status?.initContainerStatuses?.[0]?.lastState?.terminated ??
        p.status?.initContainerStatuses?.[0]?.state?.terminated
      );
    });
    expect(init.exitCode).toBe(1);
    expect(init.message).toMatch(/404/);
    const running = await waitFor('the never-ready pod to be Running', 30_000, async () => {
      const p = await core.readNamespacedPod({ name: 'never-ready', namespace });
      return p.status?.phase === 'Running' ? p : undefined;
    });
    // Several probe periods later, neither is Ready.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    for (const name of ['never-ready', 'no-artifact']) {
      const p = await core.readNamespacedPod({ name, namespace });
      expect(p.status?.conditions?.find((c) => c.type === 'Ready')?.status, name).toBe('False');
    }
    expect((await core.readNamespacedPod({ name: 'no-artifact', namespace })).status?.phase).toBe('Pending');
    expect(running.status?.podIP).toMatch(/^198\.18\./);
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
    const error = await apiError(
      objects.create({ ...virtualService(invalid), metadata: { name: 'vs-bad', namespace } }),
    );
    expect(error?.code).toBe(422);
    expect(error?.message).toMatch(/weight/);
  });

  it('denies a ServiceAccount that has no rights', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'nobody' } } });
    const token = await core.createNamespacedServiceAccountToken({
      name: 'nobody',
      namespace,
      body: { spec: { audiences: [] } },
    });
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

  it('stops every process and removes its network namespace and directory on Ctrl-C', async () => {
    const before = new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('ml-operator-cluster-')));
    const child = spawn(process.execPath, ['ci/cluster/main.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await waitFor(
      'npm run cluster to be ready',
      90_000,
      async () => (output.includes('KUBECONFIG=') ? true : undefined),
      () => output,
    );
    const dir = [...readdirSync(tmpdir()).filter((d) => d.startsWith('ml-operator-cluster-'))].find(
      (d) => !before.has(d),
    );
    expect(dir).toBeDefined();
    const pidsLine = output.match(/pids: ([\d ]+)/);
    expect(pidsLine).not.toBeNull();
    const pids = pidsLine![1].trim().split(' ').map(Number);
    // etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the pod runtime, Traefik, Prometheus, KEDA's operator and its metrics API server.
    expect(pids).toHaveLength(10);
    const netns = output.match(/network namespace: (\S+);/)![1];
    expect(execOkSync('ip', ['netns', 'list']).stdout).toContain(netns);
    child.kill('SIGINT');
    await exited;
    for (const pid of pids) expect(() => process.kill(pid, 0), `process ${pid} is still running`).toThrow();
    expect(existsSync(join(tmpdir(), dir!))).toBe(false);
    expect(execOkSync('ip', ['netns', 'list']).stdout).not.toContain(netns);
    expect(existsSync(`/etc/netns/${netns}`)).toBe(false);
  });
});
