// A real node of the local cluster, beside the kwok nodes: containerd (CRI plugin, runc, cgroupfs),
// the CNI bridge plugin giving pods addresses of a /24 of their own, a kubelet that registers the node
// and runs its pods in real containers, kube-proxy (iptables) routing Service ClusterIPs to them, and
// CoreDNS as the pods' cluster DNS: Services by name (<service>.<namespace>.svc[.cluster.local]).
// All of it runs in the cluster's network namespace, but in the host's mount namespace (nsenter
// --net): the kubelet's volume mounts must be seen by containerd and runc, and cgroups live in /sys,
// which `ip netns exec` replaces with a sysfs of the network namespace.
// The node carries a taint and a label so that only pods that ask for it land there (tolerate the
// taint, select the label); every other pod of the cluster keeps going to the kwok nodes.
// Everything the node makes lives under the cluster's directory (containerd's root and state, the
// kubelet's root, pod logs), its cgroups under a cgroup root named after the cluster's namespace;
// cleanUpRealNode() kills what is left of its containers and removes its mounts and cgroups, after a
// normal stop as after an owner that was killed outright.
import type { ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { toolPath } from '../tools/build.ts';
import { waitFor } from '../wait.ts';
import type { CertificateAuthority } from './certs.ts';
import type { ImageArchive } from './images.ts';
import type { NetworkNamespace } from './netns.ts';
import { execOk, execOkSync } from '../exec.ts';

export const realNodeName = 'real-0';
/** Label of the real node: pods select it to land there. */
export const realNodeLabel = { key: 'ml-operator.dev/real-node', value: 'true' } as const;
/** Taint of the real node: pods that do not tolerate it never land there. */
export const realNodeTaint = { key: 'ml-operator.dev/real-node', value: 'true', effect: 'NoSchedule' } as const;
/**
 * Addresses of the real node's pods: a /24 of 198.19.0.0/16 that the veth pairs never take
 * (netns.ts), since 198.18.0.0/16 is local on the namespace's loopback (the kwok nodes' pods).
 */
export const realNodePodCidr = '198.19.255.0/24';
const bridge = 'mlop-cni0';
/** The domain of the cluster's Services (the kubelet's clusterDomain). */
const clusterDomain = 'cluster.local';
/** CoreDNS's readiness endpoint (its `ready` plugin), on the DNS address. */
const dnsReadyPort = 8181;
/** kubelet's own values of these kernel settings (it writes them at start); put back at clean-up. */
const kubeletSysctls: Record<string, string> = {
  'vm/overcommit_memory': '1',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
};

/** What the real node needs of the cluster that starts it. */
export interface RealNodeHost {
  dir: string;
  netns: NetworkNamespace;
  /** The API server's URL and its CA. */
  server: string;
  ca: CertificateAuthority;
  serviceRange: string;
  /** A kubeconfig of the cluster's components (kube-proxy uses it). */
  componentsKubeconfig: string;
  adminKubeconfig: string;
  /** Starts a component in the namespace's network and the host's mounts; its output in <dir>/<name>.log. */
  start(
    name: string,
    program: string,
    args: string[],
    env?: NodeJS.ProcessEnv,
  ): { child: ChildProcess; logFile: string };
  logTail(name: string): string;
  progress: (message: string) => void;
}

export interface RealNode {
  readonly name: string;
  readonly podCidr: string;
  /** containerd's socket. */
  readonly containerdSocket: string;
  /** The cgroup (in every hierarchy) the node's pods live under. */
  readonly cgroupRoot: string;
  /** The address (port 53) of the cluster DNS, CoreDNS: the nameserver of the node's pods. */
  readonly clusterDns: string;
  /**
   * Makes an image available to the node's pods (imagePullPolicy IfNotPresent or Never) by importing
   * an archive built on this machine. pullFrom() lets the node pull from a registry instead.
   */
  provideImage(image: ImageArchive): Promise<void>;
  /**
   * Lets the node pull images from a registry at `host` (`ADDRESS:PORT`, reachable from the
   * cluster's network namespace) over plain HTTP: a hosts.toml of containerd's registry config_path,
   * which containerd reads at every pull.
   */
  pullFrom(host: string): void;
  /** Kills every container of the node and removes them (the kubelet must be stopped first). */
  removeContainers(): Promise<void>;
}

/** What clean-up needs to know of a node whose owner is gone: kept in <dir>/real-node.json. */
interface NodeRecord {
  cgroupRoot: string;
  containerdSocket: string;
  sysctls: Record<string, string>;
}

/** Why this machine cannot run the real node, or undefined when it can. */
export function realNodeProblem(): string | undefined {
  for (const [command, pkg] of [
    ['runc', 'runc'],
    ['iptables', 'iptables'],
    ['nsenter', 'util-linux'],
  ] as const) {
    try {
      execOkSync(command, ['--version']);
    } catch {
      return `the real node needs ${command}: apt-get install ${pkg}`;
    }
  }
  if (!existsSync('/sys/fs/cgroup')) return 'the real node needs cgroups mounted at /sys/fs/cgroup';
  return undefined;
}

function exec(command: string, args: string[]): string {
  return execOkSync(command, args).stdout;
}

/** The cgroup hierarchies mounted under /sys/fs/cgroup (cgroup v1 controllers, name=systemd, the unified one). */
function cgroupHierarchies(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter(
      (f) =>
        f.length > 4 &&
        (f[4] === '/sys/fs/cgroup' || f[4].startsWith('/sys/fs/cgroup/')) &&
        /^cgroup2? /.test(f.slice(f.indexOf('-') + 1).join(' ')),
    )
    .map((f) => f[4]);
}

/**
 * The node's cgroup root, made in every hierarchy: the kubelet refuses a cgroup root that does not
 * exist. cpuset children start with no CPUs and no memory nodes; they get their parent's.
 */
function createCgroupRoot(root: string): void {
  for (const hierarchy of cgroupHierarchies()) {
    const path = join(hierarchy, root);
    mkdirSync(path, { recursive: true });
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      const own = join(path, file);
      if (existsSync(own) && readFileSync(own, 'utf8').trim() === '')
        writeFileSync(own, readFileSync(join(hierarchy, file), 'utf8'));
    }
  }
}

function cgroupDirs(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) walk(join(dir, entry.name));
    found.push(dir);
  };
  for (const hierarchy of cgroupHierarchies()) if (existsSync(join(hierarchy, root))) walk(join(hierarchy, root));
  return found; // children before parents
}

function pidsIn(dirs: string[]): number[] {
  return [
    ...new Set(
      dirs.flatMap((d) =>
        existsSync(join(d, 'cgroup.procs'))
          ? readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
          : [],
      ),
    ),
  ];
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Mount points at or under dir, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4]?.replaceAll('\\040', ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/**
 * Removes what the real node of the cluster in `dir` left behind once its components are stopped or
 * dead: its containers' processes and containerd's shims, its mounts (volumes, rootfs, the pods'
 * network namespaces), its cgroups; and puts back the kernel settings the kubelet changed.
 */
export function cleanUpRealNode(dir: string): void {
  const recordFile = join(dir, 'real-node.json');
  if (!existsSync(recordFile)) return;
  const record = JSON.parse(readFileSync(recordFile, 'utf8')) as NodeRecord;
  // Shims name the socket of the containerd that started them; containers live in the node's cgroups.
  for (let round = 0; round < 20; round++) {
    const shims = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map(Number)
      .filter((pid) => pid !== process.pid && cmdlineOf(pid).includes(record.containerdSocket));
    const pids = [...shims, ...pidsIn(cgroupDirs(record.cgroupRoot))];
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    // Synchronous: this also runs in an 'exit' handler.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  // libcni caches each sandbox's result under /var/lib/cni/results (containerd cannot move it): the
  // entries of this node's sandboxes, which a DEL would have removed had the kubelet stopped them.
  const sandboxes = join(dir, 'node', 'containerd', 'state', 'io.containerd.grpc.v1.cri', 'sandboxes');
  const cniResults = '/var/lib/cni/results';
  if (existsSync(sandboxes) && existsSync(cniResults)) {
    const ids = readdirSync(sandboxes);
    for (const entry of readdirSync(cniResults))
      if (ids.some((id) => entry.includes(`-${id}-`))) rmSync(join(cniResults, entry), { force: true });
  }
  for (const mount of mountsUnder(dir)) {
    try {
      execOkSync('umount', ['--lazy', mount]);
    } catch {
      // Unmounted with its parent.
    }
  }
  for (const cgroup of cgroupDirs(record.cgroupRoot)) {
    try {
      rmdirSync(cgroup);
    } catch {
      // A process that outlived the kill keeps it; nothing else to do.
    }
  }
  for (const [key, original] of Object.entries(record.sysctls)) {
    const file = `/proc/sys/${key}`;
    // Only where the kubelet's value is still there: another node may have started since.
    if (readFileSync(file, 'utf8').trim() === kubeletSysctls[key] && original !== kubeletSysctls[key])
      writeFileSync(file, original);
  }
  writeFileSync(recordFile, JSON.stringify({ ...record, sysctls: {} }));
}

/** containerd's limit on the length of its shims' socket directory (a socket's path is its directory and 65 characters). */
const maxShimSocketDir = 42;

function containerdConfig(
  dir: string,
  socket: string,
  sandboxImage: string,
  shimSocketDir: string | undefined,
  registryDir: string,
): string {
  const q = (s: string) => JSON.stringify(s);
  return `version = 4
root = ${q(join(dir, 'root'))}
state = ${q(join(dir, 'state'))}
temp = ${q(join(dir, 'tmp'))}
# None of the host's containerd configuration.
imports = []
# Plugins that reach outside the node's directories or are of no use here.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[plugins.'io.containerd.server.v1.grpc']
  address = ${q(socket)}

[plugins.'io.containerd.server.v1.ttrpc']
  address = ${q(`${socket}.ttrpc`)}

[plugins.'io.containerd.server.v1.debug']
  address = ""

[plugins.'io.containerd.server.v1.metrics']
  address = ""

${
  shimSocketDir
    ? `# The shims' sockets too (default /run/containerd/s).
[plugins.'io.containerd.shim.v1.manager']
  socket_dir = ${q(shimSocketDir)}
`
    : ''
}
[plugins.'io.containerd.internal.v1.opt']
  path = ${q(join(dir, 'opt'))}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.registry]
    # Per-registry settings (hosts.toml in a directory per registry host), none of the host's.
    config_path = ${q(registryDir)}
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = ${q(sandboxImage)}

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  disable_apparmor = true
  # This machine refuses a negative oom_score_adj (writing -998 to /proc/self/oom_score_adj fails with
  # EIO; runc's nsexec: "failed to update /proc/self/oom_score_adj: Permission denied"): no container
  # gets a lower one than containerd's own (0), where the kubelet asks -998 for sandboxes and -997
  # for Guaranteed pods.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = ${q(exec('sh', ['-c', 'command -v runc']).trim())}
        Root = ${q(join(dir, 'runc'))}
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [${q(dirname(toolPath('bridge')))}]
    conf_dir = ${q(join(dir, 'net.d'))}
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`;
}

/** The pod network: a bridge with host-local addresses of the node's /24, loopback, host ports. */
function cniConfig(dataDir: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'ml-operator-real-node',
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        // Pods reach the host (the namespace's veth pair) with the namespace's address.
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: realNodePodCidr }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  });
}

function kubeconfig(server: string, caFile: string, cert: { certFile: string; keyFile: string }, user: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: user, user: { 'client-certificate': cert.certFile, 'client-key': cert.keyFile } }],
    contexts: [{ name: 'local', context: { cluster: 'local', user } }],
    'current-context': 'local',
  });
}

/**
 * CoreDNS's configuration: the cluster's Services and their reverse names from the API server, and no
 * other name at all: the cluster has no outside network to forward to, so a name outside the
 * cluster's domain is answered at once with NXDOMAIN (a client never waits on it).
 */
function corefile(address: string, kubeconfigFile: string): string {
  const q = (s: string) => JSON.stringify(s);
  return `${clusterDomain}:53 in-addr.arpa:53 ip6.arpa:53 {
  bind ${address}
  errors
  ready ${address}:${dnsReadyPort}
  kubernetes ${clusterDomain} in-addr.arpa ip6.arpa {
    kubeconfig ${q(kubeconfigFile)}
    ttl 5
  }
}

.:53 {
  bind ${address}
  errors
  template ANY ANY {
    rcode NXDOMAIN
  }
}
`;
}

async function ctr(socket: string, args: string[]): Promise<string> {
  return (await execOk(toolPath('ctr'), ['--address', socket, '--namespace', 'k8s.io', ...args])).output;
}

/**
 * Starts the real node and waits until it is Ready. The API server must accept client certificates
 * of the cluster's CA and authorize nodes (Node,RBAC), as control-plane.ts sets it up for a real node.
 */
export async function startRealNode(host: RealNodeHost, sandboxImage: ImageArchive): Promise<RealNode> {
  const problem = realNodeProblem();
  if (problem) throw new Error(problem);
  const { netns, progress } = host;
  const dir = join(host.dir, 'node');
  const containerdDir = join(dir, 'containerd');
  mkdirSync(containerdDir, { recursive: true });
  const socket = join(containerdDir, 'containerd.sock');
  const cgroupRoot = `/${netns.name}`;
  const sysctls = Object.fromEntries(
    Object.keys(kubeletSysctls).map((k) => [k, readFileSync(`/proc/sys/${k}`, 'utf8').trim()]),
  );
  writeFileSync(
    join(host.dir, 'real-node.json'),
    JSON.stringify({ cgroupRoot, containerdSocket: socket, sysctls } satisfies NodeRecord),
  );

  // Service ClusterIPs need a route for the kernel to send a packet that kube-proxy's rules then
  // rewrite to a pod's address; a node has its default route, this namespace only the veth pair.
  exec('ip', ['-n', netns.name, 'route', 'add', host.serviceRange, 'via', netns.hostAddress]);

  progress(`real node: starting containerd (socket ${socket})`);
  const netDir = join(containerdDir, 'net.d');
  mkdirSync(netDir);
  writeFileSync(join(netDir, '10-ml-operator.conflist'), cniConfig(join(dir, 'cni-ipam')));
  const shimSocketDir = join(host.dir, 's');
  const registryDir = join(containerdDir, 'certs.d');
  mkdirSync(registryDir);
  writeFileSync(
    join(containerdDir, 'config.toml'),
    containerdConfig(
      containerdDir,
      socket,
      sandboxImage.name,
      shimSocketDir.length <= maxShimSocketDir ? shimSocketDir : undefined,
      registryDir,
    ),
  );
  // containerd finds its runc shim on PATH.
  const path = `${dirname(toolPath('containerd-shim-runc-v2'))}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`;
  host.start(
    'containerd',
    toolPath('containerd'),
    ['--config', join(containerdDir, 'config.toml'), '--log-level', 'warn'],
    { ...process.env, PATH: path },
  );
  await waitFor(
    'containerd to serve',
    30_000,
    async () => (existsSync(socket) ? await ctr(socket, ['version']) : undefined),
    () => host.logTail('containerd'),
  );

  const node: RealNode = {
    name: realNodeName,
    podCidr: realNodePodCidr,
    containerdSocket: socket,
    cgroupRoot,
    clusterDns: netns.address,
    async provideImage(image) {
      await ctr(socket, ['images', 'import', '--no-unpack=false', image.archive]);
      const listed = await ctr(socket, ['images', 'ls', '-q']);
      if (!listed.split('\n').includes(image.name))
        throw new Error(`ctr import of ${image.archive} did not give ${image.name}; images: ${listed}`);
    },
    pullFrom(registryHost) {
      const hostDir = join(registryDir, registryHost);
      mkdirSync(hostDir, { recursive: true });
      writeFileSync(
        join(hostDir, 'hosts.toml'),
        `server = "http://${registryHost}"\n\n[host."http://${registryHost}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
    },
    async removeContainers() {
      const tasks = (await ctr(socket, ['tasks', 'ls', '-q'])).split('\n').filter(Boolean);
      for (const id of tasks)
        await ctr(socket, ['tasks', 'kill', '--all', '--signal', 'SIGKILL', id]).catch(() => undefined);
      for (const id of tasks) {
        await waitFor(`the container ${id} to exit`, 10_000, async () =>
          (await ctr(socket, ['tasks', 'ls'])).match(new RegExp(`^${id}\\s+\\d+\\s+RUNNING`, 'm')) ? undefined : true,
        ).catch(() => undefined);
        await ctr(socket, ['tasks', 'delete', '--force', id]).catch(() => undefined);
      }
    },
  };
  await node.provideImage(sandboxImage);

  progress(`real node: starting the kubelet (${realNodeName}, cgroup root ${cgroupRoot}, pods in ${realNodePodCidr})`);
  createCgroupRoot(cgroupRoot);
  const kubeletDir = join(dir, 'kubelet');
  mkdirSync(kubeletDir);
  const client = host.ca.issue('kubelet-client', [], {
    client: true,
    commonName: `system:node:${realNodeName}`,
    organization: 'system:nodes',
  });
  const serving = host.ca.issue('kubelet-serving', [netns.address, realNodeName]);
  writeFileSync(
    join(kubeletDir, 'kubeconfig'),
    kubeconfig(host.server, host.ca.certFile, client, `system:node:${realNodeName}`),
  );
  writeFileSync(
    join(kubeletDir, 'config.json'),
    JSON.stringify({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: netns.address,
      port: 10250,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: 10248,
      tlsCertFile: serving.certFile,
      tlsPrivateKeyFile: serving.keyFile,
      // Only holders of the cluster CA's certificates (the API server) call it.
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: false },
        x509: { clientCAFile: host.ca.certFile },
      },
      authorization: { mode: 'AlwaysAllow' },
      containerRuntimeEndpoint: `unix://${socket}`,
      cgroupDriver: 'cgroupfs',
      cgroupRoot,
      cgroupsPerQOS: true,
      // This machine has cgroup v1 (hybrid); the kubelet refuses it unless told otherwise.
      failCgroupV1: false,
      failSwapOn: false,
      registerWithTaints: [realNodeTaint],
      podLogsDir: join(dir, 'pod-logs'),
      clusterDomain,
      // Pods (dnsPolicy ClusterFirst) get CoreDNS as their nameserver and the cluster's search path;
      // none of the host's resolv.conf.
      clusterDNS: [node.clusterDns],
      resolvConf: '',
      maxPods: 30,
      serializeImagePulls: false,
      // The machine's disk is shared and fuller than a node's defaults allow (imagefs.available<15%):
      // evict only when it is really out of room, and never collect the images tests provide.
      evictionHard: {
        'memory.available': '50Mi',
        'nodefs.available': '1%',
        'imagefs.available': '1%',
        'nodefs.inodesFree': '1%',
      },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      nodeStatusUpdateFrequency: '5s',
      syncFrequency: '10s',
      fileCheckFrequency: '10s',
      shutdownGracePeriod: '0s',
      rotateCertificates: false,
      serverTLSBootstrap: false,
    }),
  );
  host.start('kubelet', toolPath('kubelet'), [
    `--config=${join(kubeletDir, 'config.json')}`,
    `--kubeconfig=${join(kubeletDir, 'kubeconfig')}`,
    `--root-dir=${kubeletDir}`,
    `--cert-dir=${join(kubeletDir, 'pki')}`,
    `--hostname-override=${realNodeName}`,
    `--node-ip=${netns.address}`,
    `--node-labels=${realNodeLabel.key}=${realNodeLabel.value}`,
    '--v=1',
  ]);

  progress('real node: starting kube-proxy (iptables)');
  const proxyDir = join(dir, 'kube-proxy');
  mkdirSync(proxyDir);
  writeFileSync(
    join(proxyDir, 'config.json'),
    JSON.stringify({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      clientConnection: { kubeconfig: host.componentsKubeconfig },
      hostnameOverride: realNodeName,
      bindAddress: netns.address,
      healthzBindAddress: `${netns.address}:10256`,
      metricsBindAddress: '127.0.0.1:10249',
      mode: 'iptables',
      nodePortAddresses: ['primary'],
      clusterCIDR: realNodePodCidr,
      // The conntrack table's size is the host's (a network namespace may not change it).
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      iptables: { syncPeriod: '5s', minSyncPeriod: '0s' },
    }),
  );
  host.start('kube-proxy', toolPath('kube-proxy'), [`--config=${join(proxyDir, 'config.json')}`, '--v=1']);

  // The namespace's own address, not the bridge's: the bridge appears with the first pod. Pods reach it
  // through their gateway (the bridge), as every address of the namespace.
  progress(`real node: starting CoreDNS (${clusterDomain} at ${node.clusterDns}:53)`);
  const dnsDir = join(dir, 'coredns');
  mkdirSync(dnsDir);
  // Services, EndpointSlices and Namespaces, listed and watched with the components' credentials.
  writeFileSync(join(dnsDir, 'Corefile'), corefile(node.clusterDns, host.componentsKubeconfig));
  host.start('coredns', toolPath('coredns'), ['-conf', join(dnsDir, 'Corefile')]);

  const kc = new k8s.KubeConfig();
  kc.loadFromFile(host.adminKubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await waitFor(
    `the real node ${realNodeName} to be Ready`,
    120_000,
    async () => {
      const n = await core.readNode({ name: realNodeName });
      return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? true : undefined;
    },
    async () => {
      const n = await core.readNode({ name: realNodeName }).catch(() => undefined);
      return `node conditions: ${JSON.stringify(n?.status?.conditions?.map((c) => `${c.type}=${c.status} ${c.message ?? ''}`))}\n${host.logTail('kubelet')}\n${host.logTail('containerd')}`;
    },
  );
  await waitFor(
    'kube-proxy to be healthy',
    30_000,
    async () => {
      const res = await fetch(`http://${netns.address}:10256/healthz`);
      return res.ok ? true : undefined;
    },
    () => host.logTail('kube-proxy'),
  );
  await waitFor(
    'CoreDNS to be ready (its Kubernetes caches synced)',
    30_000,
    async () => {
      const res = await fetch(`http://${node.clusterDns}:${dnsReadyPort}/ready`, { signal: AbortSignal.timeout(2000) });
      return res.ok ? true : undefined;
    },
    () => host.logTail('coredns'),
  );
  // A name it must know, over DNS itself: the API server's own Service.
  const apiService = `kubernetes.default.svc.${clusterDomain}`;
  const apiServiceIp = (await core.readNamespacedService({ name: 'kubernetes', namespace: 'default' })).spec?.clusterIP;
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([node.clusterDns]);
  await waitFor(
    `CoreDNS to answer ${apiService} with ${apiServiceIp}`,
    10_000,
    async () => ((await resolver.resolve4(apiService)).includes(apiServiceIp ?? '') ? true : undefined),
    () => host.logTail('coredns'),
  );
  return node;
}
