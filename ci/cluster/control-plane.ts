// The embedded local cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
// (fake nodes), a pod runtime that really serves every pod of those nodes on its own address, and
// Traefik routing Gateway API routes to them; all real binaries built from their Go modules, all
// in a network namespace of the cluster's own (netns.ts) that the host reaches over a veth pair.
// On request, a real node too (real-node.ts): containerd, a kubelet and kube-proxy running the pods
// that ask for it in real containers; and istiod (istiod.ts), to read what Istio programs.
// Tests and the demo start one, use the generated kubeconfig, and stop it; every process it started
// is stopped, its network namespace and its directory removed, on normal exit, on error and on Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import * as k8s from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import {
  clusterTools,
  crdFiles,
  ensureTools,
  kubernetesVersion,
  kwokStagesFile,
  toolPath,
  type Binary,
  type KubernetesRelease,
} from '../tools/build.ts';
import { log } from '../log.ts';
import { alive } from '../processes.ts';
import { waitFor } from '../wait.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { artifactHost, seedArtifacts } from './artifacts.ts';
import { nodeResource } from './pod-runtime/runtime.ts';
import { createCertificateAuthority } from './certs.ts';
import { createNetworkNamespace, reapOrphanNamespaces, type NetworkNamespace } from './netns.ts';
import { busyboxImage } from './images.ts';
import { startIstiod } from './istiod.ts';
import { cleanUpRealNode, realNodeLabel, realNodeTaint, startRealNode, type RealNode } from './real-node.ts';
import { execOk } from '../exec.ts';

const dirPrefix = 'ml-operator-cluster-';
const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

export interface ControlPlaneOptions {
  /** Fake nodes to create (kwok). */
  nodes?: number;
  /** Progress lines on stderr. */
  verbose?: boolean;
  /** Prometheus and KEDA (default true): a cluster for faults of its own control plane does without them. */
  observability?: boolean;
  /**
   * More kube-controller-manager flags. A test that freezes the API server for longer than the node
   * monitor's grace period raises it: how Kubernetes treats nodes it could not hear from is not what
   * such a test measures.
   */
  controllerManagerArgs?: string[];
  /**
   * Release of kube-apiserver, kube-controller-manager and kube-scheduler: the current one (default)
   * or the oldest minor the chart supports. kubectl, etcd, kwok and the rest stay the current ones.
   */
  kubernetes?: KubernetesRelease;
  /**
   * A real node beside the kwok ones (real-node.ts): containerd, the kubelet and kube-proxy, running
   * pods in real containers. Tainted and labelled: only pods that tolerate the taint and select the
   * label land there. Off by default; needs the current release.
   */
  realNode?: boolean;
  /** istiod (istiod.ts), reading every namespace, its plaintext xDS on the namespace's address. Off by default. */
  istio?: boolean;
}

/** Control-plane processes a test can kill, freeze and start again. */
export type FaultTarget = 'etcd' | 'kube-apiserver';

/** Faults of the control plane's own processes, for tests of what the product does through them. */
export interface ControlPlaneFaults {
  /** SIGKILL, and wait for the exit. */
  kill(target: FaultTarget): Promise<void>;
  /** Starts a killed component again, with the flags it had (replaced by `args` where a flag of the same name is given), and waits until it is ready. */
  start(target: FaultTarget, args?: string[]): Promise<void>;
  /** SIGSTOP: the process holds its connections and answers nothing. */
  pause(target: FaultTarget): void;
  /** SIGCONT. */
  resume(target: FaultTarget): void;
}

/** Where the cluster's gateway (Traefik) takes traffic: from the host, `http://address:port` with the endpoint's Host header. */
export interface GatewayInfo {
  address: string;
  port: number;
  /** The GatewayClass Traefik implements. */
  className: string;
  /** A Gateway for every namespace's routes, as platform teams run one. */
  shared: { name: string; namespace: string; sectionName: string };
  /** Traefik's Prometheus metrics, reachable from the host. */
  metricsUrl: string;
}

export interface ControlPlane {
  /** Working directory: kubeconfig, logs, audit log, certificates, pod volumes. Removed by stop(). */
  readonly dir: string;
  readonly server: string;
  /** The API server's own gitVersion (GET /version), e.g. v1.37.2. */
  readonly kubernetesVersion: string;
  /** Kubeconfig of the cluster administrator (group system:masters). */
  readonly kubeconfigPath: string;
  /** Audit log (JSON lines) of every write request, for counting who wrote what. */
  readonly auditLogPath: string;
  /** Process ids of the components (as they are now), for checks that nothing is left behind. */
  readonly pids: number[];
  readonly faults: ControlPlaneFaults;
  /** The cluster's network namespace, and the addresses of its veth pair. */
  readonly network: { namespace: string; address: string; hostAddress: string };
  readonly gateway: GatewayInfo;
  /** Directory the artifact server serves at https://models.example.com/ inside the cluster. */
  readonly artifactsDir: string;
  /**
   * Prometheus, scraping the gateway and the pods' request counts (local_pod_requests_total) every
   * second; more targets go into targetsDir as file_sd JSON files.
   */
  readonly prometheus: { url: string; targetsDir: string; podMetricsUrl: string };
  /** The real node, when the cluster was started with one. */
  readonly realNode?: RealNode;
  /** istiod, when the cluster was started with it. */
  readonly istiod?: { xdsAddress: string; debugUrl: string };
  kubeConfig(): k8s.KubeConfig;
  stop(): Promise<void>;
}

interface Component {
  name: string;
  child: ChildProcess;
  logFile: string;
  program: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Killed on purpose (a fault): its exit is not reported. */
  faulted?: boolean;
  hostMounts: boolean;
  /** Its nice value (below 0: ahead of the rest of the machine for the CPU). */
  niceness: number;
}

/**
 * Removes what a control plane left behind when its owner was killed outright (SIGKILL gives no
 * chance to clean up): directories whose owner process is gone, and the components they list.
 */
function reapOrphans(): void {
  reapOrphanNamespaces();
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
    cleanUpRealNode(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

function httpsGet(url: string, token: string, ca: Buffer | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { headers: { Authorization: `Bearer ${token}` }, ca, rejectUnauthorized: ca !== undefined, timeout: 2000 },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Runs the cluster's own kubectl; rejects with its output when it fails. */
export async function kubectl(kubeconfig: string, args: string[], input?: string): Promise<string> {
  return (await execOk(toolPath('kubectl'), [`--kubeconfig=${kubeconfig}`, ...args], { input })).output;
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
  rules: [
    { level: 'Metadata', verbs: ['create', 'update', 'patch', 'delete', 'deletecollection'] },
    // Reads too, of ServiceAccounts (the controller runs as one): the RBAC audit compares every verb it used with what the chart grants.
    { level: 'Metadata', userGroups: ['system:serviceaccounts'], verbs: ['get', 'list', 'watch'] },
    { level: 'None' },
  ],
});

/** Addresses of the cluster's own services, in a /24 of the pod range that no node gets. */
const servicesNet = '198.18.255';
/** The artifact server's address in the cluster's network (http on 80, https on 443): real containers, which have no cluster DNS, reach it there. */
export const artifactsAddress = `${servicesNet}.254`;
const apiPort = 6443;
const serviceRange = '10.96.0.0/16';
const gatewayPort = 80;
const gatewayMetricsPort = 9100;
const prometheusPort = 9090;
/** The pod runtime's request counts per pod. */
const podMetricsPort = 9102;
/** KEDA: the operator's gRPC metrics service, its external metrics API server, and that server's own metrics. */
const kedaGrpcPort = 9666;
const kedaMetricsApiPort = 6444;
const kedaAdapterMetricsPort = 9104;
export const gatewayClassName = 'traefik';
const sharedGateway = { name: 'ml-gateway', namespace: 'gateway-system', sectionName: 'http' };
/**
 * CRDs of the local cluster's add-ons that the oldest release's API server refuses, and why none of
 * the cluster's components needs them: left out there, installed on the current release.
 */
const crdsNewerThanOldest: Record<string, string> = {
  'tlsroutes.gateway.networking.k8s.io':
    'Gateway API 1.5+ checks TLSRoute hostnames with CEL isIP(), which Kubernetes serves from 1.31; Traefik watches TLSRoutes only with its experimental channel, which is off here',
};

/** The add-ons' CRD files, without those the release refuses (written to dir when some are left out). */
function addOnCrdFiles(release: KubernetesRelease, dir: string, progress: (message: string) => void): string[] {
  if (release === 'current') return crdFiles();
  return crdFiles().map((file) => {
    const docs = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as { metadata: { name: string } });
    const kept = docs.filter((crd) => !(crd.metadata.name in crdsNewerThanOldest));
    if (kept.length === docs.length) return file;
    for (const crd of docs)
      if (!kept.includes(crd))
        progress(`leaving out the CRD ${crd.metadata.name}: ${crdsNewerThanOldest[crd.metadata.name]}`);
    const filtered = join(dir, `${release}-${file.split('/').at(-1)}`);
    writeFileSync(filtered, kept.map((c) => stringify(c)).join('---\n'));
    return filtered;
  });
}

/** Label of the nodes the pod runtime serves. */
const fakeNodeLabel = 'type=kwok';

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const verbose = options.verbose ?? true;
  const progress = (message: string) => verbose && log(`cluster: ${message}`);
  const started = Date.now();
  const withRealNode = options.realNode ?? false;
  if (withRealNode && (options.kubernetes ?? 'current') !== 'current')
    throw new Error('the real node runs the current release only');
  // Only what a cluster runs: `npm test` builds the rest of the suite's tools itself (ci/test.ts).
  await ensureTools({
    realNode: withRealNode,
    istio: options.istio,
    only: clusterTools(options.kubernetes ?? 'current'),
  });
  reapOrphans();

  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  const components: Component[] = [];
  let stopped = false;
  let netns: NetworkNamespace | undefined;

  const recordPids = () => writeFileSync(join(dir, 'components.pid'), components.map((c) => c.child.pid).join('\n'));
  const killAllNow = () => {
    for (const c of components) if (c.child.exitCode === null && c.child.pid) process.kill(c.child.pid, 'SIGKILL');
    cleanUpRealNode(dir);
    netns?.remove();
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

  /**
   * Starts a program inside the cluster's network namespace, its output in `<dir>/<name>.log`; in
   * the host's mount namespace with `hostMounts` (the real node's components). A `niceness` below 0
   * puts it ahead of the rest of the machine for the CPU, every thread of it (nice execs the program).
   */
  function startComponent(
    name: string,
    program: string,
    args: string[],
    env: NodeJS.ProcessEnv = process.env,
    hostMounts = false,
    niceness = 0,
  ): Component {
    const logFile = join(dir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    // A process group of its own: a terminal's Ctrl-C or a parent's group kill reaches this
    // process only, which then stops the components in order (clients before the API server).
    // `nice`, `ip netns exec` and nsenter exec the program, so the pid is the program's own.
    const [inNamespace, inNamespaceArgs] = hostMounts
      ? netns!.hostMountsCommand(program, args)
      : netns!.command(program, args);
    const [command, argv] = niceness
      ? ['nice', ['-n', String(niceness), inNamespace, ...inNamespaceArgs]]
      : [inNamespace, inNamespaceArgs];
    const child = spawn(command, argv, { cwd: dir, stdio: ['ignore', fd, fd], detached: true, env });
    closeSync(fd);
    const component: Component = { name, child, logFile, program, args, env, hostMounts, niceness };
    // A component started again takes its predecessor's place: stop() keeps the start order.
    const previous = components.findIndex((c) => c.name === name);
    if (previous >= 0) components[previous] = component;
    else components.push(component);
    recordPids();
    child.on('exit', (code, signal) => {
      if (!stopped && !component.faulted)
        process.stderr.write(
          `cluster: ${name} exited unexpectedly (code ${code}, signal ${signal})\n${logTail(component)}\n`,
        );
    });
    return component;
  }
  const componentNamed = (name: string) => {
    const c = components.find((x) => x.name === name);
    if (!c) throw new Error(`no control-plane component named ${name}`);
    return c;
  };
  /** Readiness of the components a fault can hit; filled in as they start. */
  const readiness: Partial<Record<FaultTarget, () => Promise<void>>> = {};
  const faults: ControlPlaneFaults = {
    async kill(target) {
      const c = componentNamed(target);
      if (c.child.exitCode !== null || c.child.signalCode !== null) return;
      c.faulted = true;
      const exited = new Promise((resolve) => c.child.once('exit', resolve));
      // SIGCONT too: a frozen process takes a SIGKILL, but its exit is reported only once it runs.
      c.child.kill('SIGKILL');
      c.child.kill('SIGCONT');
      await exited;
      progress(`${target} killed (fault)`);
    },
    async start(target, args = []) {
      const c = componentNamed(target);
      if (c.child.exitCode === null && c.child.signalCode === null)
        throw new Error(`${target} is still running: kill it first`);
      const names = new Set(args.map((a) => a.split('=')[0]));
      startComponent(
        target,
        c.program,
        [...c.args.filter((a) => !names.has(a.split('=')[0])), ...args],
        c.env,
        c.hostMounts,
        c.niceness,
      );
      await readiness[target]!();
      progress(`${target} started again${args.length ? ` with ${args.join(' ')}` : ''}`);
    },
    pause(target) {
      componentNamed(target).child.kill('SIGSTOP');
      progress(`${target} frozen (SIGSTOP)`);
    },
    resume(target) {
      componentNamed(target).child.kill('SIGCONT');
      progress(`${target} resumed (SIGCONT)`);
    },
  };
  const release = options.kubernetes ?? 'current';
  const startTool = (name: Binary, args: string[], niceness = 0) =>
    startComponent(name, toolPath(name, release), args, process.env, false, niceness);
  // The data plane (the gateway, and the pod runtime that stands for the nodes' kubelets and every
  // model container) runs ahead of the rest of this machine for the CPU. On a real cluster it has
  // nodes of its own; here it shares two cores with the API server, etcd, the controllers and the
  // test processes, and at equal priority a busy moment of those held requests in the gateway or
  // the pod runtime for over a second (CPU profiles of the pod runtime: its answers' socket writes
  // waiting on the scheduler, its garbage collection stretched by preemption).
  const dataPlaneNiceness = -10;

  let realNode: RealNode | undefined;
  let stopping: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopping ??= stopComponents();
    return stopping;
  }
  async function stopComponents(): Promise<void> {
    stopped = true;
    // Reverse start order: clients before the API server, the API server before etcd.
    for (const c of [...components].reverse()) {
      // The real node's containers outlive the kubelet and containerd: removed while containerd still serves.
      if (c.name === 'containerd' && c.child.exitCode === null && c.child.signalCode === null)
        await realNode?.removeContainers().catch(() => undefined);
      if (c.child.exitCode !== null || c.child.signalCode !== null) continue;
      const exited = new Promise((resolve) => c.child.once('exit', resolve));
      c.child.kill('SIGTERM');
      const timeout = delay(5000).then(() => 'timeout');
      if ((await Promise.race([exited, timeout])) === 'timeout') {
        c.child.kill('SIGKILL');
        await exited;
      }
    }
    cleanUpRealNode(dir);
    netns?.remove();
    rmSync(dir, { recursive: true, force: true });
    process.off('exit', killAllNow);
    progress('stopped');
  }

  try {
    netns = createNetworkNamespace();
    progress(
      `network namespace ${netns.name}: pods in 198.18.0.0/16, reachable from the host at ${netns.address} (veth, host side ${netns.hostAddress})`,
    );
    const pki = join(dir, 'pki');
    mkdirSync(pki);
    const ca = createCertificateAuthority(pki);
    const artifactCert = ca.issue('artifacts', [artifactHost, artifactsAddress]);
    // The API server's certificate, from the same CA: valid for the host's view (the veth address),
    // for loopback inside the namespace, and for the kubernetes Service's names.
    const apiCert = ca.issue('apiserver', [
      netns.address,
      '127.0.0.1',
      'localhost',
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
      '10.96.0.1',
    ]);
    // The aggregation layer: the API server proxies to extension API servers (KEDA's external
    // metrics) with this client certificate and the user in request headers.
    const frontProxy = ca.issue('front-proxy-client', [], { client: true, commonName: 'front-proxy-client' });
    // The API server's client certificate towards a real node's kubelet (logs, exec).
    const kubeletClient = withRealNode
      ? ca.issue('apiserver-kubelet-client', [], {
          client: true,
          commonName: 'kube-apiserver-kubelet-client',
          organization: 'system:masters',
        })
      : undefined;
    const artifactsDir = join(dir, 'artifacts');
    seedArtifacts(artifactsDir);
    netns.setHosts({ [artifactHost]: artifactsAddress });

    const tokens = { admin: randomBytes(16).toString('hex'), system: randomBytes(16).toString('hex') };
    writeFileSync(
      join(dir, 'tokens.csv'),
      [
        `${tokens.admin},admin,admin,"system:masters"`,
        `${tokens.system},system:ml-operator-local-components,components,"system:masters"`,
      ].join('\n') + '\n',
    );
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    writeFileSync(join(dir, 'audit-policy.json'), auditPolicy);

    // The namespace is the cluster's own: its loopback and its ports belong to nobody else.
    progress('starting etcd');
    startTool('etcd', [
      '--name=default',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:2379,http://${netns.address}:2379`,
      '--advertise-client-urls=http://127.0.0.1:2379',
      '--listen-peer-urls=http://127.0.0.1:2380',
      '--initial-advertise-peer-urls=http://127.0.0.1:2380',
      '--initial-cluster=default=http://127.0.0.1:2380',
      // A throwaway test cluster: durability is not wanted, speed is.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    const server = `https://${netns.address}:${apiPort}`;
    const etcdUrl = `http://${netns.address}:2379/health`;
    readiness.etcd = () =>
      waitFor(
        'etcd /health',
        30_000,
        async () => ((await fetch(etcdUrl)).ok ? true : undefined),
        () => logTail(componentNamed('etcd')),
      ).then(() => undefined);
    await readiness.etcd();

    progress(`starting kube-apiserver ${kubernetesVersion(release)} on ${server}`);
    startTool('kube-apiserver', [
      '--etcd-servers=http://127.0.0.1:2379',
      '--bind-address=0.0.0.0',
      `--advertise-address=${netns.address}`,
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${apiCert.certFile}`,
      `--tls-private-key-file=${apiCert.keyFile}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      // A real node's kubelet authenticates with a client certificate and is authorized as a node.
      ...(withRealNode
        ? [
            '--authorization-mode=Node,RBAC',
            `--client-ca-file=${ca.certFile}`,
            `--kubelet-client-certificate=${kubeletClient!.certFile}`,
            `--kubelet-client-key=${kubeletClient!.keyFile}`,
            '--kubelet-preferred-address-types=InternalIP',
          ]
        : ['--authorization-mode=RBAC']),
      `--enable-admission-plugins=PodSecurity${withRealNode ? ',NodeRestriction' : ''}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      `--service-cluster-ip-range=${serviceRange}`,
      `--audit-policy-file=${join(dir, 'audit-policy.json')}`,
      `--audit-log-path=${join(dir, 'audit.log')}`,
      '--audit-log-maxsize=0',
      `--requestheader-client-ca-file=${ca.certFile}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--proxy-client-cert-file=${frontProxy.certFile}`,
      `--proxy-client-key-file=${frontProxy.keyFile}`,
      // No kube-proxy here: reach extension API servers at their endpoints' addresses.
      '--enable-aggregator-routing=true',
      '--max-requests-inflight=1000',
      '--max-mutating-requests-inflight=500',
      '--profiling=false',
    ]);
    const certFile = ca.certFile;
    readiness['kube-apiserver'] = () =>
      waitFor(
        'kube-apiserver /readyz',
        60_000,
        async () => {
          const res = await httpsGet(`${server}/readyz`, tokens.admin, readFileSync(certFile));
          return res.status === 200 ? true : undefined;
        },
        () => logTail(componentNamed('kube-apiserver')),
      ).then(() => undefined);
    await readiness['kube-apiserver']();

    const served = JSON.parse((await httpsGet(`${server}/version`, tokens.admin, readFileSync(certFile))).body) as {
      gitVersion: string;
    };
    if (served.gitVersion !== kubernetesVersion(release))
      throw new Error(`kube-apiserver reports ${served.gitVersion}, expected ${kubernetesVersion(release)}`);

    const caData = readFileSync(certFile).toString('base64');
    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, caData, 'admin', tokens.admin));
    const componentsKubeconfig = join(dir, 'components.kubeconfig');
    writeFileSync(componentsKubeconfig, kubeconfigYaml(server, caData, 'components', tokens.system));

    progress('starting kube-controller-manager, kube-scheduler, kwok and the pod runtime');
    startTool('kube-controller-manager', [
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
      // HorizontalPodAutoscalers (KEDA's among them) look every 5 s rather than 15.
      '--horizontal-pod-autoscaler-sync-period=5s',
      '--concurrent-replicaset-syncs=10',
      '--concurrent-gc-syncs=50',
      ...(options.controllerManagerArgs ?? []),
    ]);
    startTool('kube-scheduler', [`--kubeconfig=${componentsKubeconfig}`, '--leader-elect=false', '--secure-port=0']);
    startTool('kwok', [
      `--kubeconfig=${componentsKubeconfig}`,
      `--config=${kwokStagesFile()}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--node-lease-duration-seconds=40',
      '--server-address=127.0.0.1:0',
    ]);
    const runtime = startComponent(
      'pod-runtime',
      process.execPath,
      [
        join(root, 'ci', 'cluster', 'pod-runtime', 'main.ts'),
        `--kubeconfig=${componentsKubeconfig}`,
        `--data-dir=${join(dir, 'data')}`,
        `--artifacts-dir=${artifactsDir}`,
        `--artifacts-address=${artifactsAddress}`,
        `--cert=${artifactCert.certFile}`,
        `--key=${artifactCert.keyFile}`,
        `--ca=${ca.certFile}`,
        `--metrics-address=${netns.address}:${podMetricsPort}`,
        `--node-selector=${fakeNodeLabel}`,
      ],
      process.env,
      false,
      dataPlaneNiceness,
    );

    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const nodes = options.nodes ?? 2;
    if (nodes > 250) throw new Error(`at most 250 fake nodes fit the pod range (one /24 each), not ${nodes}`);
    const [labelKey, labelValue] = fakeNodeLabel.split('=');
    for (let i = 0; i < nodes; i++) {
      await core.createNode({
        body: {
          metadata: {
            name: `kwok-node-${i}`,
            annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
            labels: {
              'kubernetes.io/hostname': `kwok-node-${i}`,
              'kubernetes.io/os': 'linux',
              'kubernetes.io/arch': 'amd64',
              [labelKey]: labelValue,
            },
          },
          // Each node's pods get addresses of its own /24 of the pod range; .1 is the node's.
          spec: { podCIDR: `198.18.${i}.0/24`, podCIDRs: [`198.18.${i}.0/24`] },
          status: {
            allocatable: { cpu: '32', memory: '128Gi', pods: '250' },
            capacity: { cpu: '32', memory: '128Gi', pods: '250' },
          },
        },
      });
    }

    progress('installing the Istio networking, Gateway API and Traefik CRDs');
    const addOnCrds = addOnCrdFiles(release, dir, progress);
    await kubectl(kubeconfigPath, ['apply', '--server-side', ...addOnCrds.flatMap((f) => ['-f', f])]);
    await kubectl(kubeconfigPath, [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      ...addOnCrds.flatMap((f) => ['-f', f]),
    ]);

    progress(`starting Traefik (Gateway API) on ${netns.address}:${gatewayPort}`);
    writeFileSync(join(dir, 'gateway.token'), tokens.system);
    const traefik = startTool(
      'traefik',
      [
        // Its own address: the artifact server holds :80 and :443 of another address of the namespace.
        `--entryPoints.web.address=${netns.address}:${gatewayPort}`,
        `--entryPoints.metrics.address=${netns.address}:${gatewayMetricsPort}`,
        '--global.checkNewVersion=false',
        '--global.sendAnonymousUsage=false',
        '--providers.kubernetesgateway=true',
        `--providers.kubernetesgateway.endpoint=${server}`,
        `--providers.kubernetesgateway.token=${join(dir, 'gateway.token')}`,
        `--providers.kubernetesgateway.certAuthFilePath=${certFile}`,
        `--providers.kubernetesgateway.statusAddress.ip=${netns.address}`,
        // Its own CRDs too: HTTPRoutes may name a TraefikService (how shadows are mirrored on Traefik).
        '--providers.kubernetescrd=true',
        `--providers.kubernetescrd.endpoint=${server}`,
        `--providers.kubernetescrd.token=${join(dir, 'gateway.token')}`,
        `--providers.kubernetescrd.certAuthFilePath=${certFile}`,
        // A TraefikService whose mirror has no ready endpoint must still carry its primary's requests.
        '--providers.kubernetescrd.allowEmptyServices=true',
        '--metrics.prometheus=true',
        '--metrics.prometheus.entryPoint=metrics',
        '--metrics.prometheus.addServicesLabels=true',
        '--metrics.prometheus.addRoutersLabels=true',
        '--ping=true',
        '--ping.entryPoint=metrics',
        '--log.level=INFO',
        '--log.format=json',
      ],
      dataPlaneNiceness,
    );
    await kubectl(kubeconfigPath, ['apply', '--server-side', '-f', '-'], gatewayObjects());

    const observability = options.observability ?? true;
    const targetsDir = join(dir, 'prometheus-targets');
    let prometheus: Component | undefined;
    let kedaAdapter: Component | undefined;
    if (observability) {
      progress(`starting Prometheus on ${netns.address}:${prometheusPort}, scraping the gateway every second`);
      mkdirSync(targetsDir);
      writeFileSync(
        join(dir, 'prometheus.yml'),
        prometheusConfig(`${netns.address}:${gatewayMetricsPort}`, `${netns.address}:${podMetricsPort}`, targetsDir),
      );
      prometheus = startTool('prometheus', [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'prometheus')}`,
        `--web.listen-address=${netns.address}:${prometheusPort}`,
        '--storage.tsdb.retention.time=2h',
        '--log.level=warn',
      ]);

      progress(`starting KEDA (operator, and its external metrics API on ${netns.address}:${kedaMetricsApiPort})`);
      const kedaDir = join(dir, 'keda');
      mkdirSync(kedaDir);
      const kedaCert = ca.issue(
        'keda',
        [
          netns.address,
          'keda-operator.keda.svc',
          'keda-operator.keda.svc.cluster.local',
          'keda-metrics-apiserver.keda.svc',
        ],
        { client: true },
      );
      copyFileSync(kedaCert.certFile, join(kedaDir, 'tls.crt'));
      copyFileSync(kedaCert.keyFile, join(kedaDir, 'tls.key'));
      copyFileSync(ca.certFile, join(kedaDir, 'ca.crt'));
      await kubectl(kubeconfigPath, ['apply', '--server-side', '-f', '-'], kedaObjects(netns.address));
      const kedaEnv = {
        ...process.env,
        KUBECONFIG: componentsKubeconfig,
        WATCH_NAMESPACE: '',
        POD_NAMESPACE: 'keda',
        POD_NAME: 'keda-operator',
        KEDA_CLUSTER_OBJECT_NAMESPACE: 'keda',
      };
      startComponent(
        'keda-operator',
        toolPath('keda-operator'),
        [
          '--leader-elect=false',
          '--metrics-bind-address=0',
          '--health-probe-bind-address=0',
          `--metrics-service-bind-address=${netns.address}:${kedaGrpcPort}`,
          `--cert-dir=${kedaDir}`,
          '--enable-cert-rotation=false',
          `--ca-dir=${kedaDir}`,
          '--zap-log-level=info',
          '--zap-encoder=json',
        ],
        kedaEnv,
      );
      kedaAdapter = startComponent(
        'keda-adapter',
        toolPath('keda-adapter'),
        [
          `--bind-address=${netns.address}`,
          `--secure-port=${kedaMetricsApiPort}`,
          `--cert-dir=${kedaDir}`,
          `--tls-cert-file=${join(kedaDir, 'tls.crt')}`,
          `--tls-private-key-file=${join(kedaDir, 'tls.key')}`,
          `--lister-kubeconfig=${componentsKubeconfig}`,
          `--authentication-kubeconfig=${componentsKubeconfig}`,
          `--authorization-kubeconfig=${componentsKubeconfig}`,
          `--metrics-service-address=${netns.address}:${kedaGrpcPort}`,
          `--port=${kedaAdapterMetricsPort}`,
          '--zap-encoder=json',
        ],
        kedaEnv,
      );
    }

    await waitFor(
      'the fake nodes to be Ready',
      30_000,
      async () => {
        const list = await core.listNode();
        const ready = list.items.filter((n) =>
          n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ready.length >= nodes ? true : undefined;
      },
      () => logTail(components.find((c) => c.name === 'kwok')!),
    );
    // Each node's address is the first of its /24 (kwok's initialisation replaces the status a node is created with).
    const nodeClient = new KubeClient(kc, { fieldManager: 'ml-operator-local-cluster' });
    for (let i = 0; i < nodes; i++) {
      await nodeClient.applyStatus(nodeResource, {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: `kwok-node-${i}` },
        status: {
          addresses: [
            { type: 'InternalIP', address: `198.18.${i}.1` },
            { type: 'Hostname', address: `kwok-node-${i}` },
          ],
        },
      });
    }
    await waitFor(
      'the default ServiceAccount',
      30_000,
      async () => {
        await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
        return true;
      },
      () => logTail(components.find((c) => c.name === 'kube-controller-manager')!),
    );
    await waitFor(
      'the pod runtime',
      30_000,
      async () => (readFileSync(runtime.logFile, 'utf8').includes('pod runtime ready') ? true : undefined),
      () => logTail(runtime),
    );
    const metricsUrl = `http://${netns.address}:${gatewayMetricsPort}/metrics`;
    await waitFor(
      'Traefik to accept the shared Gateway',
      60_000,
      async () => {
        const ping = await fetch(`http://${netns!.address}:${gatewayMetricsPort}/ping`);
        if (!ping.ok) return undefined;
        const out = await kubectl(kubeconfigPath, [
          'get',
          'gateway',
          sharedGateway.name,
          '-n',
          sharedGateway.namespace,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Programmed")].status}',
        ]);
        return out.trim() === 'True' ? true : undefined;
      },
      () => logTail(traefik),
    );

    if (withRealNode) {
      const nodeStarted = Date.now();
      realNode = await startRealNode(
        {
          dir,
          netns,
          server,
          ca,
          serviceRange,
          componentsKubeconfig,
          adminKubeconfig: kubeconfigPath,
          start: (name, program, args, env) => startComponent(name, program, args, env ?? process.env, true),
          logTail: (name) => logTail(componentNamed(name)),
          progress,
        },
        busyboxImage(),
      );
      progress(
        `real node ${realNode.name} (${realNodeLabel.key}=${realNodeLabel.value}, taint ${realNodeTaint.key}=${realNodeTaint.value}:${realNodeTaint.effect}) Ready in ${((Date.now() - nodeStarted) / 1000).toFixed(1)}s`,
      );
    }

    const istiod = options.istio
      ? await startIstiod({
          kubeconfigPath,
          network: { namespace: netns.name, address: netns.address },
          dir,
          start: (name, program, args, env) => startComponent(name, program, args, env),
          progress,
        })
      : undefined;

    const prometheusUrl = `http://${netns.address}:${prometheusPort}`;
    if (observability) {
      await waitFor(
        'KEDA external metrics API to be Available',
        120_000,
        async () => {
          const out = await kubectl(kubeconfigPath, [
            'get',
            'apiservice',
            'v1beta1.external.metrics.k8s.io',
            '-o',
            'jsonpath={.status.conditions[?(@.type=="Available")].status}',
          ]);
          return out.trim() === 'True' ? true : undefined;
        },
        () => logTail(kedaAdapter!),
      );
      await waitFor(
        'Prometheus to be ready',
        60_000,
        async () => ((await fetch(`${prometheusUrl}/-/ready`)).ok ? true : undefined),
        () => logTail(prometheus!),
      );
    }
    progress(`ready in ${((Date.now() - started) / 1000).toFixed(1)}s (kubeconfig: ${kubeconfigPath})`);
    return {
      dir,
      server,
      kubernetesVersion: served.gitVersion,
      kubeconfigPath,
      auditLogPath: join(dir, 'audit.log'),
      get pids() {
        return components.map((c) => c.child.pid!);
      },
      faults,
      network: { namespace: netns.name, address: netns.address, hostAddress: netns.hostAddress },
      gateway: {
        address: netns.address,
        port: gatewayPort,
        className: gatewayClassName,
        shared: sharedGateway,
        metricsUrl,
      },
      artifactsDir,
      prometheus: {
        url: prometheusUrl,
        targetsDir,
        podMetricsUrl: `http://${netns.address}:${podMetricsPort}/metrics`,
      },
      realNode,
      istiod: istiod && { xdsAddress: istiod.xdsAddress, debugUrl: istiod.debugUrl },
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

/**
 * KEDA's namespace, and its external metrics API server registered with the aggregation layer: a
 * Service without selector whose endpoint is the adapter's address in the cluster's namespace.
 */
function kedaObjects(address: string): string {
  const metadata = { name: 'keda-metrics-apiserver', namespace: 'keda' };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'keda' } },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata,
        spec: { ports: [{ name: 'https', port: 443, targetPort: kedaMetricsApiPort, protocol: 'TCP' }] },
      },
      {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata,
        subsets: [
          { addresses: [{ ip: address }], ports: [{ name: 'https', port: kedaMetricsApiPort, protocol: 'TCP' }] },
        ],
      },
      {
        apiVersion: 'apiregistration.k8s.io/v1',
        kind: 'APIService',
        metadata: { name: 'v1beta1.external.metrics.k8s.io' },
        spec: {
          group: 'external.metrics.k8s.io',
          version: 'v1beta1',
          service: { name: metadata.name, namespace: 'keda', port: 443 },
          insecureSkipTLSVerify: true,
          groupPriorityMinimum: 100,
          versionPriority: 100,
        },
      },
    ],
  });
}

/** Prometheus scrapes the gateway, the pods' request counts, and whatever targets tests add as file_sd files. */
function prometheusConfig(gatewayMetrics: string, podMetrics: string, targetsDir: string): string {
  return JSON.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    scrape_configs: [
      { job_name: 'gateway', static_configs: [{ targets: [gatewayMetrics] }] },
      { job_name: 'pods', static_configs: [{ targets: [podMetrics] }] },
      { job_name: 'targets', file_sd_configs: [{ files: [join(targetsDir, '*.json')], refresh_interval: '1s' }] },
    ],
  });
}

/** The GatewayClass Traefik implements and the shared Gateway, in its own namespace, open to routes of every namespace. */
function gatewayObjects(): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'GatewayClass',
        metadata: { name: gatewayClassName },
        spec: { controllerName: 'traefik.io/gateway-controller' },
      },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: sharedGateway.namespace } },
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        metadata: { name: sharedGateway.name, namespace: sharedGateway.namespace },
        spec: {
          gatewayClassName,
          listeners: [
            {
              name: sharedGateway.sectionName,
              protocol: 'HTTP',
              port: gatewayPort,
              allowedRoutes: { namespaces: { from: 'All' } },
            },
          ],
        },
      },
    ],
  });
}
