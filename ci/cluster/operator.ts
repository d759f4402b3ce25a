// Installs the chart from the working tree into a local control plane and runs the controller as a
// local process under the chart's ServiceAccount (a TokenRequest token), so that what it may do is
// exactly what the chart's RBAC grants. Used by the integration tests, the benchmark and the demo.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { toolPath } from '../tools/build.ts';
import { waitFor } from '../wait.ts';
import { execOk } from '../exec.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** A Helm release of the chart: its name and namespace name the ServiceAccount and the config. */
export interface Release {
  name: string;
  namespace: string;
}
export const release: Release = { name: 'ml-operator', namespace: 'ml-operator' };
export const serviceAccountOf = (r: Release) => `${r.name}-controller`;
/** The controller runs as a local process: the chart's own Deployment is scaled to zero. */
const releaseDefaults = ['controller.replicaCount=0', 'controller.podDisruptionBudget.enabled=false'];
export const serviceAccount = serviceAccountOf(release);

export async function helm(kubeconfig: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return (await execOk(toolPath('helm'), [`--kubeconfig=${kubeconfig}`, ...args], { cwd: root, env })).output;
}

/** `helm install` of the working tree, the controller's own Deployment scaled to zero (it runs locally). */
export async function installChart(kubeconfig: string, values: string[] = [], into: Release = release): Promise<void> {
  // Each release's values, beside the kubeconfig, so that an audit of the run can render what each was granted.
  appendFileSync(
    join(dirname(kubeconfig), 'releases.jsonl'),
    `${JSON.stringify({ ...into, values: [...releaseDefaults, ...values] })}\n`,
  );
  await helm(kubeconfig, [
    'upgrade',
    '--install',
    into.name,
    '.',
    '--namespace',
    into.namespace,
    '--create-namespace',
    ...[...releaseDefaults, ...values].flatMap((v) => ['--set', v]),
    '--wait',
    '--timeout',
    '2m',
  ]);
}

/** A kubeconfig (its text) that authenticates as the chart's ServiceAccount. */
export async function serviceAccountKubeconfig(admin: k8s.KubeConfig, of: Release = release): Promise<string> {
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const serviceAccount = serviceAccountOf(of);
  const token = await core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace: of.namespace,
    body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
  });
  const cluster = admin.getCurrentCluster()!;
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server: cluster.server, 'certificate-authority-data': cluster.caData } }],
    users: [{ name: serviceAccount, user: { token: token.status!.token } }],
    contexts: [{ name: 'local', context: { cluster: 'local', user: serviceAccount } }],
    'current-context': 'local',
  });
}

/** The config file the chart rendered for the controller (its ConfigMap), with overrides. */
export async function chartConfig(
  admin: k8s.KubeConfig,
  overrides: Record<string, unknown> = {},
  of: Release = release,
): Promise<Record<string, unknown>> {
  const cm = await admin
    .makeApiClient(k8s.CoreV1Api)
    .readNamespacedConfigMap({ name: `${of.name}-controller`, namespace: of.namespace });
  return { ...(JSON.parse(cm.data!['config.json']) as Record<string, unknown>), ...overrides };
}

export interface ControllerProcess {
  readonly child: ChildProcess;
  readonly healthPort: number;
  readonly metricsPort: number;
  logs(): string;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit: a crash. */
  kill(): Promise<void>;
  metrics(): Promise<string>;
}

export interface ControllerOptions {
  /** Kubeconfig text the controller authenticates with. */
  kubeconfig: string;
  config: Record<string, unknown>;
  namespaces?: string[];
  leaderElect?: boolean;
  identity?: string;
  logLevel?: string;
  /** Endpoints reconciled at once (the controller's --concurrency). */
  concurrency?: number;
  /** The release whose Lease the controller takes (leader election). */
  release?: Release;
  /**
   * Run inside the cluster's network namespace, as a pod would (it then reaches pods, for smoke
   * tests); its health and metrics ports are reached at the namespace's address.
   */
  network?: { namespace: string; address: string };
  /** Copy the controller's log lines to stderr. */
  echo?: boolean;
  /** The program to run: controller/src/main.ts (type stripping) unless given, say the compiled controller/dist/main.js the image runs. */
  entry?: string;
  /** More flags (--kube-api-qps=...). */
  args?: string[];
  /** Flags of node itself (--cpu-prof, say), before the program. */
  nodeOptions?: string[];
}

/** Starts `node controller/src/main.ts` (or `entry`) and waits until it serves /healthz. */
export async function startControllerProcess(o: ControllerOptions): Promise<ControllerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'ml-operator-controller-'));
  const configPath = join(dir, 'config.json');
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(configPath, JSON.stringify(o.config));
  writeFileSync(kubeconfigPath, o.kubeconfig, { mode: 0o600 });
  const args = [
    ...(o.nodeOptions ?? []),
    o.entry ?? join(root, 'controller', 'src', 'main.ts'),
    `--config=${configPath}`,
    `--leader-elect=${o.leaderElect ?? false}`,
    `--leader-election-namespace=${(o.release ?? release).namespace}`,
    `--leader-election-id=${(o.release ?? release).name}-controller`,
    `--log-level=${o.logLevel ?? 'info'}`,
    '--metrics-port=0',
    '--health-port=0',
    ...(o.concurrency ? [`--concurrency=${o.concurrency}`] : []),
    ...(o.namespaces?.length ? [`--watch-namespaces=${o.namespaces.join(',')}`] : []),
    ...(o.args ?? []),
  ];
  const [command, argv] = o.network
    ? ['ip', ['netns', 'exec', o.network.namespace, process.execPath, ...args]]
    : [process.execPath, args];
  const child = spawn(command, argv, {
    env: {
      ...process.env,
      KUBECONFIG: kubeconfigPath,
      POD_NAMESPACE: (o.release ?? release).namespace,
      POD_NAME: o.identity ?? `local-${process.pid}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (c: Buffer) => {
    output += c.toString();
    if (o.echo) process.stderr.write(c);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  // The controller never outlives this process, whatever ends it; its files go with it.
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
      resolve();
    }),
  );
  const ports = await waitFor(
    'the controller to serve /healthz',
    30_000,
    async () => {
      if (child.exitCode !== null) throw new Error(`the controller exited with ${child.exitCode}`);
      const line = output.split('\n').find((l) => l.includes('"healthPort"'));
      if (!line) return undefined;
      const parsed = JSON.parse(line) as { healthPort: number; metricsPort: number };
      return { health: parsed.healthPort, metrics: parsed.metricsPort };
    },
    () => output.slice(-3000),
  );
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    child,
    healthPort: ports.health,
    metricsPort: ports.metrics,
    logs: () => output,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
    metrics: async () => (await fetch(`http://${o.network?.address ?? '127.0.0.1'}:${ports.metrics}/metrics`)).text(),
  };
}
