// The control plane failing under a serving endpoint, in a cluster of the file's own (the run's
// shared cluster must not lose its API server under the other test files): kube-apiserver killed and
// started again, etcd killed and started again, the API server frozen (SIGSTOP) for 60 s, and the API
// server answering 429 to the controller. Each time: traffic through the gateway is untouched, the
// controller (leader election on, as the chart runs it) is never restarted, its watches recover by
// themselves, and a change made during the outage (retried until the API server takes it) converges
// within 30 s of the recovery.
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishArtifact } from '../../ci/cluster/artifacts.ts';
import { startControlPlane, type ControlPlane, type FaultTarget } from '../../ci/cluster/control-plane.ts';
import {
  chartConfig,
  installChart,
  release,
  serviceAccountKubeconfig,
  startControllerProcess,
  type ControllerProcess,
} from '../../ci/cluster/operator.ts';
import { describeReport, startLoad, type LoadRun } from '../../ci/traffic/load.ts';
import { waitFor } from '../../ci/wait.ts';
import type { MachineLearningEndpoint, MachineLearningEndpointConfigSpec } from '../../controller/src/api/generated.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { backendsOf, expectServed } from './served.ts';

const apiVersion = 'ml-operator.dev/v1alpha1';
const namespace = 'faults';
let cluster: ControlPlane;
let user: KubeClient;
let controller: ControllerProcess;
const host = (endpoint: string) => `${endpoint}.${namespace}.models.example.com`;

beforeAll(async () => {
  cluster = await startControlPlane({
    observability: false,
    // Kubernetes marks nodes it has not heard from for this long NotReady, and their pods with them;
    // after a 60 s freeze of the API server that would be the node lifecycle's doing, not the product's.
    controllerManagerArgs: ['--node-monitor-grace-period=5m'],
  });
  const admin = cluster.kubeConfig();
  user = new KubeClient(admin, { fieldManager: 'integration-test' });
  const g = cluster.gateway;
  await installChart(cluster.kubeconfigPath, [
    'controller.config.routing.provider=gatewayAPI',
    `controller.config.routing.gatewayAPI.sharedGateway.name=${g.shared.name}`,
    `controller.config.routing.gatewayAPI.sharedGateway.namespace=${g.shared.namespace}`,
    `controller.config.routing.gatewayAPI.sharedGateway.sectionName=${g.shared.sectionName}`,
  ]);
  await admin.makeApiClient(k8s.CoreV1Api).createNamespace({
    body: { metadata: { name: namespace, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } },
  });
  controller = await startControllerProcess({
    kubeconfig: await serviceAccountKubeconfig(admin),
    config: await chartConfig(admin),
    namespaces: [namespace],
    leaderElect: true,
    identity: 'controller-0',
    release,
    network: cluster.network,
    echo: process.env.ML_OPERATOR_TEST_LOGS === '1',
  });
  for (const m of ['a', 'b']) {
    publishArtifact(cluster.artifactsDir, `/${m}.tar.gz`, { name: m, format: 'demo' });
    await apply('MachineLearningModel', m, {
      image: `acme/${m}:1`,
      artifact: `https://models.example.com/${m}.tar.gz`,
      readinessPath: '/healthz',
    });
  }
  await apply('MachineLearningEndpointConfig', 'c', weights(80, 20));
  await apply('MachineLearningEndpoint', 'e', { config: 'c' });
  await converged('e', 80, 20, 90_000);
  await waitFor(`the gateway to route ${host('e')}`, 30_000, async () => {
    const probe = load('e', 1);
    await probe.done;
    return probe.samples[0].status === 200 ? true : undefined;
  });
}, 300_000);

afterAll(async () => {
  await controller?.stop();
  await cluster?.stop();
});

function weights(a: number, b: number): MachineLearningEndpointConfigSpec {
  return {
    models: [
      { model: 'a', weight: a },
      { model: 'b', weight: b },
    ],
  };
}

async function apply(
  kind: 'MachineLearningModel' | 'MachineLearningEndpointConfig' | 'MachineLearningEndpoint',
  name: string,
  spec: unknown,
): Promise<void> {
  const r = {
    MachineLearningModel: resources.model,
    MachineLearningEndpointConfig: resources.endpointConfig,
    MachineLearningEndpoint: resources.endpoint,
  }[kind];
  await user.apply(r, { apiVersion, kind, metadata: { name, namespace }, spec });
}

/** Applies, retrying for as long as the API server refuses or cannot be reached, as a user's `kubectl apply` in a loop would. */
async function applyWhenPossible(
  kind: 'MachineLearningEndpointConfig' | 'MachineLearningEndpoint',
  name: string,
  spec: unknown,
): Promise<number> {
  await waitFor(`the API server to take the ${kind} ${name}`, 120_000, async () => {
    await apply(kind, name, spec);
    return true;
  });
  return Date.now();
}

/** The model instances endpoint `name` routes to: a re-weight keeps them. */
async function backends(name: string): Promise<string[]> {
  return backendsOf((await user.get<MachineLearningEndpoint & KubeObject>(resources.endpoint, namespace, name))!);
}

/** Waits until the endpoint serves variants a and b at these weights, and says when it did. */
async function converged(name: string, a: number, b: number, timeoutMs: number): Promise<number> {
  let last: MachineLearningEndpoint | undefined;
  await waitFor(
    `endpoint ${namespace}/${name} to serve ${a}/${b}`,
    timeoutMs,
    async () => {
      last = (await user.get<MachineLearningEndpoint & KubeObject>(resources.endpoint, namespace, name)) ?? undefined;
      const s = last?.status;
      const ready = s?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      const byVariant = Object.fromEntries((s?.traffic ?? []).map((t) => [t.variant, t.weight]));
      return s?.state === 'InService' && ready && byVariant.a === a && byVariant.b === b ? true : undefined;
    },
    () =>
      `last status: ${JSON.stringify(last?.status, null, 2)}\ncontroller log tail:\n${controller.logs().slice(-3000)}`,
  );
  return Date.now();
}

function load(endpoint: string, requests: number, rate?: number): LoadRun {
  const g = cluster.gateway;
  return startLoad({
    url: `http://${g.address}:${g.port}/predict`,
    host: host(endpoint),
    requests,
    rate,
    concurrency: 64,
    maxDurationMs: 240_000,
  });
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

/** A fault: how it starts, how long it lasts, how it ends (the component back and ready). */
interface Fault {
  begin(): Promise<void> | void;
  downMs: number;
  end(): Promise<void> | void;
}

/**
 * Runs the fault under 20 requests a second. While it lasts a client changes the weights, trying
 * again until the API server takes it (as `kubectl apply` in a loop would); the change must converge
 * within 30 s of the recovery, with no request failed and the controller the same process.
 */
async function throughOutage(what: string, fault: Fault, to: [number, number]): Promise<void> {
  const pid = controller.child.pid;
  const serving = await backends('e');
  const run = load('e', 10_000, 20);
  await waitFor('the first answers under load', 10_000, async () => (run.samples.length >= 10 ? true : undefined));
  const outageStarted = Date.now();
  await fault.begin();
  const applying = applyWhenPossible('MachineLearningEndpointConfig', 'c', weights(...to));
  // The outage lasts this long by design: nothing to wait for but time.
  await delay(fault.downMs);
  await fault.end();
  const recovered = Date.now();
  const applied = await applying;
  const done = await converged('e', to[0], to[1], 30_000 - (Date.now() - recovered));
  // A few seconds of traffic on the new weights, through the gateway's reload.
  const after = run.samples.length;
  await waitFor('requests after the change', 30_000, async () => (run.samples.length >= after + 60 ? true : undefined));
  run.stop();
  const r = await run.done;
  process.stdout.write(
    `[faults] ${what}: outage ${seconds(recovered - outageStarted)}; the change made during it was taken ${seconds(applied - recovered)} after recovery and converged ${seconds(done - recovered)} after recovery; ${describeReport(r)}\n`,
  );
  expectServed(run, { backends: serving, namespace });
  expect(controller.child.exitCode, `the controller exited during ${what}`).toBeNull();
  expect(controller.child.pid).toBe(pid);
  expect(done - recovered).toBeLessThanOrEqual(30_000);
}

const killed = (target: FaultTarget, downMs: number): Fault => ({
  begin: () => cluster.faults.kill(target),
  downMs,
  end: () => cluster.faults.start(target),
});

describe('the control plane failing under a serving endpoint', () => {
  it('kube-apiserver killed and started again: traffic untouched, watches recover, a change converges within 30 s', async () => {
    await throughOutage('kube-apiserver killed for 10 s', killed('kube-apiserver', 10_000), [50, 50]);
  });

  it('etcd killed and started again: traffic untouched, watches recover, a change converges within 30 s', async () => {
    await throughOutage('etcd killed for 10 s', killed('etcd', 10_000), [20, 80]);
  });

  it('kube-apiserver frozen for 60 s: the controller steps down, stands by, leads again without a restart', async () => {
    const logsBefore = controller.logs().length;
    await throughOutage(
      'kube-apiserver frozen (SIGSTOP) for 60 s',
      {
        begin: () => cluster.faults.pause('kube-apiserver'),
        downMs: 60_000,
        end: () => cluster.faults.resume('kube-apiserver'),
      },
      [70, 30],
    );
    const during = controller.logs().slice(logsBefore);
    expect(during).toContain('lost the leader lease; writes stopped, standing by');
    expect(during.slice(during.indexOf('lost the leader lease'))).toContain('became leader');
  }, 300_000);

  it('the API server answering 429: the controller backs off, retries after Retry-After, and converges', async () => {
    // The legacy in-flight limit, one request at a time: the controller's ServiceAccount gets 429s
    // with Retry-After; the cluster's own components (system:masters) are exempt from it.
    const serving = await backends('e');
    await cluster.faults.kill('kube-apiserver');
    await cluster.faults.start('kube-apiserver', [
      '--enable-priority-and-fairness=false',
      '--max-requests-inflight=1',
      '--max-mutating-requests-inflight=1',
    ]);
    const throttledBefore = throttled(await controller.metrics());
    const names = Array.from({ length: 8 }, (_, i) => `t${i}-${randomBytes(2).toString('hex')}`);
    const started = Date.now();
    const run = load('e', 10_000, 20);
    for (const n of names) await applyWhenPossible('MachineLearningEndpoint', n, { config: 'c' });
    const times = await Promise.all(names.map((n) => converged(n, 70, 30, 120_000)));
    run.stop();
    const r = await run.done;
    const count = throttled(await controller.metrics()) - throttledBefore;
    process.stdout.write(
      `[faults] 429s: ${names.length} new endpoints converged in ${seconds(Math.max(...times) - started)} (median ${seconds(times.sort((x, y) => x - y)[names.length >> 1] - started)}), the controller was told to retry later ${count} times; traffic to the serving endpoint: ${describeReport(r)}\n`,
    );
    expect(count, 'the API server never answered 429: the fault was not in place').toBeGreaterThan(0);
    expectServed(run, { backends: serving, namespace });
    expect(controller.child.exitCode).toBeNull();
  }, 300_000);
});

function throttled(metrics: string): number {
  const m = /^ml_operator_api_throttled_total (\d+)/m.exec(metrics);
  return m ? Number(m[1]) : 0;
}
