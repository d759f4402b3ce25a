// The embedded local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kwok (fake nodes whose pods really become Running and Ready), all real binaries built from
// their Go modules. Tests and the demo start one, use the generated kubeconfig, and stop it; every
// process it started is stopped and its directory removed on normal exit, on error and on Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import * as k8s from '@kubernetes/client-node';
import { crdFiles, ensureTools, kwokStagesFile, toolPath, type Binary } from '../tools/build.ts';
import { log } from '../log.ts';
import { alive, freePort } from '../processes.ts';
import { waitFor } from '../wait.ts';

const dirPrefix = 'ml-operator-cluster-';

export interface ControlPlaneOptions {
  /** Fake nodes to create (kwok). */
  nodes?: number;
  /** Progress lines on stderr. */
  verbose?: boolean;
}

export interface ControlPlane {
  /** Working directory: kubeconfig, logs, audit log, certificates. Removed by stop(). */
  readonly dir: string;
  readonly server: string;
  /** Kubeconfig of the cluster administrator (group system:masters). */
  readonly kubeconfigPath: string;
  /** Audit log (JSON lines) of every write request, for counting who wrote what. */
  readonly auditLogPath: string;
  /** Process ids of the components, for checks that nothing is left behind. */
  readonly pids: number[];
  kubeConfig(): k8s.KubeConfig;
  stop(): Promise<void>;
}

interface Component {
  name: Binary;
  child: ChildProcess;
  logFile: string;
}

/**
 * Removes what a control plane left behind when its owner was killed outright (SIGKILL gives no
 * chance to clean up): directories whose owner process is gone, and the components they list.
 */
function reapOrphans(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(dirPrefix)) continue;
    const dir = join(tmpdir(), entry);
    const ownerFile = join(dir, 'owner.pid');
    if (!existsSync(ownerFile)) continue;
    const owner = Number(readFileSync(ownerFile, 'utf8'));
    if (alive(owner)) continue;
    const pidsFile = join(dir, 'components.pid');
    const pids = existsSync(pidsFile) ? readFileSync(pidsFile, 'utf8').split('\n').filter(Boolean).map(Number) : [];
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

function httpsGet(url: string, token: string, ca: Buffer | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Authorization: `Bearer ${token}` }, ca, rejectUnauthorized: ca !== undefined, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Runs the cluster's own kubectl; rejects with its output when it fails. */
export function kubectl(kubeconfig: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(toolPath('kubectl'), [`--kubeconfig=${kubeconfig}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')} failed (exit ${code}):\n${out}`))));
  });
}

function kubeconfigYaml(server: string, caData: string, user: string, token: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'ml-operator-local', cluster: { server, 'certificate-authority-data': caData } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'ml-operator-local', context: { cluster: 'ml-operator-local', user } }],
    'current-context': 'ml-operator-local',
  });
}

const auditPolicy = JSON.stringify({
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [{ level: 'Metadata', verbs: ['create', 'update', 'patch', 'delete', 'deletecollection'] }, { level: 'None' }],
});

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const verbose = options.verbose ?? true;
  const progress = (message: string) => verbose && log(`cluster: ${message}`);
  const started = Date.now();
  await ensureTools();
  reapOrphans();

  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  const components: Component[] = [];
  let stopped = false;

  const recordPids = () => writeFileSync(join(dir, 'components.pid'), components.map((c) => c.child.pid).join('\n'));
  const killAllNow = () => {
    for (const c of components) if (c.child.exitCode === null && c.child.pid) process.kill(c.child.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  // Last resort when the owner exits without calling stop(): 'exit' handlers must be synchronous.
  process.on('exit', killAllNow);
  // A signal stops the control plane, then is raised again so the process ends as it would have.
  // Repeats while stopping (npm, a terminal and a parent may each pass the same signal on) wait
  // for the same stop instead of killing the process halfway through its clean-up.
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (signal: NodeJS.Signals) => {
    void stop().finally(() => {
      for (const s of signals) process.off(s, onSignal);
      process.kill(process.pid, signal);
    });
  };
  for (const s of signals) process.on(s, onSignal);

  const logTail = (c: Component) => {
    const lines = existsSync(c.logFile) ? readFileSync(c.logFile, 'utf8').trimEnd().split('\n') : [];
    return `last lines of ${c.name} log (${c.logFile}):\n${lines.slice(-15).join('\n')}`;
  };

  function startComponent(name: Binary, args: string[]): Component {
    const logFile = join(dir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    // A process group of its own: a terminal's Ctrl-C or a parent's group kill reaches this
    // process only, which then stops the components in order (clients before the API server).
    const child = spawn(toolPath(name), args, { cwd: dir, stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    const component = { name, child, logFile };
    components.push(component);
    recordPids();
    child.on('exit', (code, signal) => {
      if (!stopped) process.stderr.write(`cluster: ${name} exited unexpectedly (code ${code}, signal ${signal})\n${logTail(component)}\n`);
    });
    return component;
  }

  let stopping: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopping ??= stopComponents();
    return stopping;
  }
  async function stopComponents(): Promise<void> {
    stopped = true;
    // Reverse start order: clients before the API server, the API server before etcd.
    for (const c of [...components].reverse()) {
      if (c.child.exitCode !== null || c.child.signalCode !== null) continue;
      const exited = new Promise((resolve) => c.child.once('exit', resolve));
      c.child.kill('SIGTERM');
      const timeout = delay(5000).then(() => 'timeout');
      if ((await Promise.race([exited, timeout])) === 'timeout') {
        c.child.kill('SIGKILL');
        await exited;
      }
    }
    rmSync(dir, { recursive: true, force: true });
    process.off('exit', killAllNow);
    progress('stopped');
  }

  try {
    const [etcdPort, etcdPeerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const tokens = { admin: randomBytes(16).toString('hex'), system: randomBytes(16).toString('hex') };
    writeFileSync(
      join(dir, 'tokens.csv'),
      [`${tokens.admin},admin,admin,"system:masters"`, `${tokens.system},system:ml-operator-local-components,components,"system:masters"`].join('\n') + '\n',
    );
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(dir, 'audit-policy.json'), auditPolicy);

    progress(`starting etcd on 127.0.0.1:${etcdPort}`);
    const etcd = startComponent('etcd', [
      '--name=default',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
      // A throwaway test cluster: durability is not wanted, speed is.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    await waitFor('etcd /health', 30_000, async () => {
      const res = await fetch(`http://127.0.0.1:${etcdPort}/health`);
      return res.ok ? true : undefined;
    }, () => logTail(etcd));

    progress(`starting kube-apiserver on https://127.0.0.1:${apiPort}`);
    const server = `https://127.0.0.1:${apiPort}`;
    const apiserver = startComponent('kube-apiserver', [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      // Loopback may not be published as the kubernetes Service's endpoint; nothing here needs it.
      '--endpoint-reconciler-type=none',
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'pki')}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      '--enable-admission-plugins=PodSecurity',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      `--audit-policy-file=${join(dir, 'audit-policy.json')}`,
      `--audit-log-path=${join(dir, 'audit.log')}`,
      '--audit-log-maxsize=0',
      '--max-requests-inflight=1000',
      '--max-mutating-requests-inflight=500',
      '--profiling=false',
    ]);
    const certFile = join(dir, 'pki', 'apiserver.crt');
    await waitFor('kube-apiserver /readyz', 60_000, async () => {
      if (!existsSync(certFile)) return undefined;
      const res = await httpsGet(`${server}/readyz`, tokens.admin, readFileSync(certFile));
      return res.status === 200 ? true : undefined;
    }, () => logTail(apiserver));

    const caData = readFileSync(certFile).toString('base64');
    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, caData, 'admin', tokens.admin));
    const componentsKubeconfig = join(dir, 'components.kubeconfig');
    writeFileSync(componentsKubeconfig, kubeconfigYaml(server, caData, 'components', tokens.system));

    progress('starting kube-controller-manager, kube-scheduler and kwok');
    startComponent('kube-controller-manager', [
      `--kubeconfig=${componentsKubeconfig}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      '--secure-port=0',
      `--service-account-private-key-file=${join(dir, 'sa.key')}`,
      `--root-ca-file=${certFile}`,
      '--use-service-account-credentials=false',
      '--kube-api-qps=200',
      '--kube-api-burst=400',
      '--concurrent-deployment-syncs=10',
      '--concurrent-replicaset-syncs=10',
      '--concurrent-gc-syncs=50',
    ]);
    startComponent('kube-scheduler', [`--kubeconfig=${componentsKubeconfig}`, '--leader-elect=false', '--secure-port=0']);
    startComponent('kwok', [
      `--kubeconfig=${componentsKubeconfig}`,
      `--config=${kwokStagesFile()}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--node-lease-duration-seconds=40',
      '--cidr=10.244.0.1/16',
      '--node-ip=10.244.0.1',
      '--server-address=127.0.0.1:0',
    ]);

    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const nodes = options.nodes ?? 2;
    for (let i = 0; i < nodes; i++) {
      await core.createNode({
        body: {
          metadata: {
            name: `kwok-node-${i}`,
            annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
            labels: { 'kubernetes.io/hostname': `kwok-node-${i}`, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', type: 'kwok' },
          },
          status: {
            allocatable: { cpu: '32', memory: '128Gi', pods: '250' },
            capacity: { cpu: '32', memory: '128Gi', pods: '250' },
          },
        },
      });
    }

    progress('installing the Istio networking and Gateway API CRDs');
    await kubectl(kubeconfigPath, ['apply', '--server-side', ...crdFiles().flatMap((f) => ['-f', f])]);
    await kubectl(kubeconfigPath, ['wait', '--for=condition=Established', '--timeout=60s', ...crdFiles().flatMap((f) => ['-f', f])]);

    await waitFor('the fake nodes to be Ready', 30_000, async () => {
      const list = await core.listNode();
      const ready = list.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return ready.length >= nodes ? true : undefined;
    }, () => logTail(components.find((c) => c.name === 'kwok')!));
    await waitFor('the default ServiceAccount', 30_000, async () => {
      await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
      return true;
    }, () => logTail(components.find((c) => c.name === 'kube-controller-manager')!));

    progress(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s (kubeconfig: ${kubeconfigPath})`);
    return {
      dir,
      server,
      kubeconfigPath,
      auditLogPath: join(dir, 'audit.log'),
      pids: components.map((c) => c.child.pid!),
      kubeConfig() {
        const config = new k8s.KubeConfig();
        config.loadFromFile(kubeconfigPath);
        return config;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
