// Builds the pinned Go tools the project tests against (helm 4 and 3, helm-unittest, the Kubernetes
// control plane of the current release and of the oldest minor the chart supports, etcd, kwok, and
// the data plane and observability of the local cluster: Traefik, istioctl, Prometheus; the object
// stores the fetcher is tested against: MinIO, fake-gcs-server) and extracts the Istio and Gateway
// API CRDs from their Go modules; on request, the tools of a real node (kubelet, kube-proxy,
// containerd, the CNI plugins, CoreDNS) and Istio's control plane (istiod, with an xDS reader).
// Each tool is a small Go module under ci/tools/<tool>/ whose go.mod pins the version; the result is
// cached outside the repository under a key made of the pin, so a fresh clone reuses it and only a
// changed pin rebuilds. Run directly (`npm run tools`) or through ensureTools().
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { cacheRoot } from '../cache.mjs';
import { log, withProgress } from '../log.ts';

const toolsDir = dirname(fileURLToPath(import.meta.url));

interface GoTool {
  /** Directory under ci/tools/ holding the tool's go.mod and go.sum. */
  module: string;
  /** The module whose pinned version names the tool. */
  pinned: string;
  /** Main packages to build; each becomes a binary named after the last path element (or `binary`). */
  packages: { pkg: string; binary?: string }[];
  ldflags: (version: string) => string[];
  /** Build tags (-tags). */
  tags?: string[];
  /** Built only when asked for (ensureTools({ realNode: true })): the real node's kubelet, runtime and network. */
  realNode?: boolean;
  /** Built only when asked for (ensureTools({ istio: true })): istiod and what reads it. */
  istio?: boolean;
  /** Files the tool needs besides its binaries, copied from its Go modules into its directory. */
  files?: { module: string; path: string; as: string }[];
}

function kubernetesLdflags(version: string): string[] {
  const [major, minor] = version.replace(/^v/, '').split('.');
  const values = { gitVersion: version, gitMajor: major, gitMinor: minor, gitTreeState: 'clean', buildDate: '1970-01-01T00:00:00Z' };
  return Object.entries(values).flatMap(([key, value]) => [
    `-X k8s.io/component-base/version.${key}=${value}`,
    `-X k8s.io/client-go/pkg/version.${key}=${value}`,
  ]);
}

const controlPlaneBinaries = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'] as const;

const goTools: Record<string, GoTool> = {
  helm4: {
    module: 'helm4',
    pinned: 'helm.sh/helm/v4',
    packages: [{ pkg: 'helm.sh/helm/v4/cmd/helm' }],
    ldflags: (v) => [`-X helm.sh/helm/v4/internal/version.version=${v}`, '-X helm.sh/helm/v4/internal/version.metadata='],
  },
  helm3: {
    module: 'helm3',
    pinned: 'helm.sh/helm/v3',
    packages: [{ pkg: 'helm.sh/helm/v3/cmd/helm' }],
    ldflags: (v) => {
      // Helm 3 reports the Kubernetes version it was built against as its default (helm template's
      // .Capabilities.KubeVersion); its Makefile derives it from client-go's version v0.X.Y -> 1.X.
      const clientGo = modVersion('helm3', 'k8s.io/client-go');
      const minor = clientGo.split('.')[1];
      return [
        `-X helm.sh/helm/v3/internal/version.version=${v}`,
        '-X helm.sh/helm/v3/internal/version.metadata=',
        ...['pkg/lint/rules', 'pkg/chartutil'].flatMap((p) => [
          `-X helm.sh/helm/v3/${p}.k8sVersionMajor=1`,
          `-X helm.sh/helm/v3/${p}.k8sVersionMinor=${minor}`,
        ]),
      ];
    },
  },
  'helm-unittest': {
    module: 'helm-unittest',
    pinned: 'github.com/helm-unittest/helm-unittest',
    packages: [{ pkg: 'github.com/helm-unittest/helm-unittest/cmd/helm-unittest' }],
    ldflags: (v) => [`-X github.com/helm-unittest/helm-unittest/internal/build.version=${v}`],
  },
  kubernetes: {
    module: 'kubernetes',
    pinned: 'k8s.io/kubernetes',
    packages: [...controlPlaneBinaries, 'kubectl'].map((c) => ({ pkg: `k8s.io/kubernetes/cmd/${c}` })),
    ldflags: kubernetesLdflags,
  },
  // The control plane of the oldest Kubernetes minor the chart claims (Chart.yaml kubeVersion);
  // kubectl, etcd and the rest of the local cluster stay the current ones.
  'kubernetes-oldest': {
    module: 'kubernetes-oldest',
    pinned: 'k8s.io/kubernetes',
    packages: controlPlaneBinaries.map((c) => ({ pkg: `k8s.io/kubernetes/cmd/${c}` })),
    ldflags: kubernetesLdflags,
  },
  // A real node beside the fake ones (ci/cluster/real-node.ts): kubelet and kube-proxy of the same
  // release as the control plane (a module of their own, so the control plane's cache entry stays).
  'kubernetes-node': {
    module: 'kubernetes-node',
    realNode: true,
    pinned: 'k8s.io/kubernetes',
    packages: ['kubelet', 'kube-proxy'].map((c) => ({ pkg: `k8s.io/kubernetes/cmd/${c}` })),
    ldflags: kubernetesLdflags,
  },
  // The real node's container runtime: containerd with its CRI plugin, the runc shim and ctr. The
  // snapshotters that need cgo and their C libraries (btrfs) or devices (devmapper, zfs) are left out:
  // the node uses overlayfs or native.
  containerd: {
    module: 'containerd',
    realNode: true,
    pinned: 'github.com/containerd/containerd/v2',
    packages: ['containerd', 'containerd-shim-runc-v2', 'ctr'].map((c) => ({ pkg: `github.com/containerd/containerd/v2/cmd/${c}` })),
    ldflags: (v) => [`-X github.com/containerd/containerd/v2/version.Version=${v}`],
    tags: ['no_btrfs', 'no_devmapper', 'no_zfs', 'urfave_cli_no_docs'],
  },
  // The real node's pod network: a bridge with host-local addresses, loopback, and host ports.
  'cni-plugins': {
    module: 'cni-plugins',
    realNode: true,
    pinned: 'github.com/containernetworking/plugins',
    packages: ['main/bridge', 'ipam/host-local', 'main/loopback', 'meta/portmap'].map((p) => ({ pkg: `github.com/containernetworking/plugins/plugins/${p}` })),
    ldflags: (v) => [`-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=${v}`],
  },
  // The real node's cluster DNS: its pods resolve Services by name (<service>.<namespace>.svc).
  coredns: {
    module: 'coredns',
    realNode: true,
    pinned: 'github.com/coredns/coredns',
    packages: [{ pkg: 'github.com/coredns/coredns' }],
    ldflags: () => [],
  },
  etcd: {
    module: 'etcd',
    pinned: 'go.etcd.io/etcd/server/v3',
    packages: [{ pkg: 'go.etcd.io/etcd/server/v3', binary: 'etcd' }],
    ldflags: () => [],
  },
  kwok: {
    module: 'kwok',
    pinned: 'sigs.k8s.io/kwok',
    packages: [{ pkg: 'sigs.k8s.io/kwok/cmd/kwok' }],
    ldflags: (v) => [`-X sigs.k8s.io/kwok/pkg/consts.Version=${v}`],
  },
  // The local cluster's data plane: a Gateway API implementation that really routes.
  traefik: {
    module: 'traefik',
    pinned: 'github.com/traefik/traefik/v3',
    packages: [{ pkg: 'github.com/traefik/traefik/v3/cmd/traefik' }],
    ldflags: (v) => [`-X github.com/traefik/traefik/v3/pkg/version.Version=${v}`],
  },
  // Istio's own analyzers check the objects of the Istio provider (Envoy cannot be built here).
  istioctl: {
    module: 'istioctl',
    pinned: 'istio.io/istio',
    packages: [{ pkg: 'istio.io/istio/istioctl/cmd/istioctl' }],
    ldflags: (v) => [`-X istio.io/istio/pkg/version.buildVersion=${v}`],
  },
  // Istio's control plane, to read what it programs an ingress gateway with over xDS: pilot-discovery
  // (istiod) of the istioctl module's Istio, and xds-reader (ci/tools/istiod/xds-reader), which asks
  // istiod as a proxy would and prints the answer as JSON. istiod needs every CRD of Istio's chart.
  istiod: {
    module: 'istiod',
    istio: true,
    pinned: 'istio.io/istio',
    packages: [{ pkg: 'istio.io/istio/pilot/cmd/pilot-discovery' }, { pkg: 'ml-operator.dev/ci/tools/istiod/xds-reader' }],
    ldflags: (v) => [`-X istio.io/istio/pkg/version.buildVersion=${v}`],
    files: [{ module: 'istio.io/istio', path: 'manifests/charts/base/files/crd-all.gen.yaml', as: 'istio-crds.yaml' }],
  },
  // Autoscaling on requests per second: KEDA's operator and its external metrics API server.
  keda: {
    module: 'keda',
    pinned: 'github.com/kedacore/keda/v2',
    packages: [
      { pkg: 'github.com/kedacore/keda/v2/cmd/operator', binary: 'keda-operator' },
      { pkg: 'github.com/kedacore/keda/v2/cmd/adapter', binary: 'keda-adapter' },
    ],
    ldflags: (v) => [`-X github.com/kedacore/keda/v2/version.Version=${v}`],
  },
  // Metric gates query it; it scrapes the gateway. Service discovery plugins are left out (static targets only).
  prometheus: {
    module: 'prometheus',
    pinned: 'github.com/prometheus/prometheus',
    packages: [{ pkg: 'github.com/prometheus/prometheus/cmd/prometheus' }],
    ldflags: (v) => [`-X github.com/prometheus/common/version.Version=${v}`],
    tags: ['remove_all_sd'],
  },
  // Object stores the artifact fetcher downloads from in tests: MinIO as a real S3 server (static
  // keys, and STS AssumeRoleWithWebIdentity against the local API server as OIDC issuer), and
  // fake-gcs-server for the Cloud Storage JSON API. MinIO publishes no semver tags: the pin is a
  // pseudo-version of one commit.
  minio: {
    module: 'minio',
    pinned: 'github.com/minio/minio',
    packages: [{ pkg: 'github.com/minio/minio' }],
    ldflags: () => [],
  },
  'fake-gcs-server': {
    module: 'fake-gcs-server',
    pinned: 'github.com/fsouza/fake-gcs-server',
    packages: [{ pkg: 'github.com/fsouza/fake-gcs-server' }],
    ldflags: () => [],
  },
};

/** Binaries the rest of the project asks for, and the Go tool that provides each. */
export const binaries = {
  helm: 'helm4',
  helm3: 'helm3',
  'helm-unittest': 'helm-unittest',
  'kube-apiserver': 'kubernetes',
  'kube-controller-manager': 'kubernetes',
  'kube-scheduler': 'kubernetes',
  kubectl: 'kubernetes',
  kubelet: 'kubernetes-node',
  'kube-proxy': 'kubernetes-node',
  containerd: 'containerd',
  'containerd-shim-runc-v2': 'containerd',
  ctr: 'containerd',
  bridge: 'cni-plugins',
  'host-local': 'cni-plugins',
  loopback: 'cni-plugins',
  portmap: 'cni-plugins',
  coredns: 'coredns',
  etcd: 'etcd',
  kwok: 'kwok',
  traefik: 'traefik',
  istioctl: 'istioctl',
  'pilot-discovery': 'istiod',
  'xds-reader': 'istiod',
  prometheus: 'prometheus',
  'keda-operator': 'keda',
  'keda-adapter': 'keda',
  minio: 'minio',
  'fake-gcs-server': 'fake-gcs-server',
} as const satisfies Record<string, keyof typeof goTools>;

export type Binary = keyof typeof binaries;

/**
 * Which Kubernetes release the control-plane binaries come from: the current one, or the oldest
 * minor the chart supports (ci/tools/kubernetes-oldest).
 */
export type KubernetesRelease = 'current' | 'oldest';

/** The version of k8s.io/kubernetes a release's tool module pins, e.g. v1.30.14. */
export function kubernetesVersion(release: KubernetesRelease): string {
  return modVersion(release === 'oldest' ? 'kubernetes-oldest' : 'kubernetes', 'k8s.io/kubernetes');
}

function modVersion(module: string, path: string): string {
  const goMod = readFileSync(join(toolsDir, module, 'go.mod'), 'utf8');
  const match = goMod.match(new RegExp(`^\\s*(?:require\\s+)?${path.replaceAll('.', '\\.')}\\s+(v\\S+)`, 'm'));
  if (!match) throw new Error(`ci/tools/${module}/go.mod does not require ${path}`);
  return match[1];
}

function goToolDir(name: string, tool: GoTool): { dir: string; version: string; ldflags: string[] } {
  const version = modVersion(tool.module, tool.pinned);
  const ldflags = ['-s', '-w', ...tool.ldflags(version)];
  const hash = createHash('sha256');
  // A module's own Go sources are part of what it builds, beside its pins.
  const sources = readdirSync(join(toolsDir, tool.module), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.go')).sort();
  for (const file of ['go.mod', 'go.sum', ...sources]) hash.update(readFileSync(join(toolsDir, tool.module, file)));
  hash.update(ldflags.join(' '));
  if (tool.tags) hash.update(`tags ${tool.tags.join(',')}`);
  return { dir: join(cacheRoot(), 'tools', `${name}-${version}-${hash.digest('hex').slice(0, 10)}`), version, ldflags };
}

/**
 * Absolute path of a built tool binary (call ensureTools() first); kube-apiserver,
 * kube-controller-manager and kube-scheduler of the given Kubernetes release.
 */
export function toolPath(binary: Binary, kubernetes: KubernetesRelease = 'current'): string {
  const name = kubernetes === 'oldest' && (controlPlaneBinaries as readonly string[]).includes(binary) ? 'kubernetes-oldest' : binaries[binary];
  // Both helm majors build a binary named helm; they live in separate directories.
  return join(goToolDir(name, goTools[name]).dir, binary === 'helm3' ? 'helm' : binary);
}

function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, GOTOOLCHAIN: 'local' } });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited with ${code}:\n${stderr}`)),
    );
  });
}

/** Removes half-built directories left by a build that was killed. */
function removeStaleTemporaries(): void {
  const root = join(cacheRoot(), 'tools');
  if (!existsSync(root)) return;
  for (const entry of readdirSync(root)) {
    const pid = Number(entry.match(/\.tmp-(\d+)$/)?.[1]);
    if (!pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      rmSync(join(root, entry), { recursive: true, force: true });
    }
  }
}

function built(name: string, tool: GoTool): boolean {
  return existsSync(join(goToolDir(name, tool).dir, '.complete'));
}

const tagFlags = (tool: GoTool) => (tool.tags ? ['-tags', tool.tags.join(',')] : []);

/** Downloads the modules a tool's build needs (resolving its packages, compiling nothing). */
function downloadGoTool(tool: GoTool): Promise<void> {
  return run('go', ['list', '-deps', ...tagFlags(tool), '-f', '{{if false}}{{end}}', ...tool.packages.map((p) => p.pkg)], join(toolsDir, tool.module));
}

async function buildGoTool(name: string, tool: GoTool): Promise<void> {
  const { dir, version, ldflags } = goToolDir(name, tool);
  if (existsSync(join(dir, '.complete'))) return;
  const binaryNames = tool.packages.map((p) => p.binary ?? p.pkg.split('/').at(-1)!);
  await withProgress('tools', `building ${binaryNames.join(', ')} ${version} with go build`, async () => {
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const cwd = join(toolsDir, tool.module);
    // One `go build` per binary when names must be chosen; one for all when the names already fit.
    if (tool.packages.some((p) => p.binary)) {
      for (const [i, p] of tool.packages.entries()) {
        await run('go', ['build', '-trimpath', ...tagFlags(tool), '-ldflags', ldflags.join(' '), '-o', join(tmp, binaryNames[i]), p.pkg], cwd);
      }
    } else {
      await run('go', ['build', '-trimpath', ...tagFlags(tool), '-ldflags', ldflags.join(' '), '-o', `${tmp}/`, ...tool.packages.map((p) => p.pkg)], cwd);
    }
    for (const f of tool.files ?? []) copyFileSync(join(await goModDir(tool.module, f.module), f.path), join(tmp, f.as));
    writeFileSync(join(tmp, '.complete'), `${version}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  });
}

function crdsDir(): string {
  const key = createHash('sha256')
    .update(readFileSync(join(toolsDir, 'crds', 'go.sum')))
    .update(readFileSync(join(toolsDir, 'kwok', 'go.mod')))
    .update(readFileSync(join(toolsDir, 'traefik', 'go.mod')))
    .update(readFileSync(join(toolsDir, 'keda', 'go.mod')))
    .update(readFileSync(fileURLToPath(import.meta.url)))
    .digest('hex')
    .slice(0, 10);
  return join(cacheRoot(), 'tools', `crds-${key}`);
}

/** Every CRD of Istio's chart, of istiod's own release (ensureTools({ istio: true }) first). */
export function istioCrdsFile(): string {
  return join(goToolDir('istiod', goTools.istiod).dir, 'istio-crds.yaml');
}

/** Files of CRDs that the local control plane installs: Istio networking, Gateway API standard, Traefik's and KEDA's own. */
export function crdFiles(): string[] {
  return ['istio-networking.yaml', 'gateway-api-standard.yaml', 'traefik.yaml', 'keda.yaml'].map((f) => join(crdsDir(), f));
}

/** kwok's own node stages (initialise, heartbeat with lease). */
export function kwokStagesFile(): string {
  return join(crdsDir(), 'kwok-stages.yaml');
}

async function goModDir(module: string, path: string): Promise<string> {
  const cwd = join(toolsDir, module);
  await run('go', ['mod', 'download', path], cwd);
  return new Promise((resolve, reject) => {
    const child = spawn('go', ['list', '-m', '-f', '{{.Dir}}', path], { cwd, env: { ...process.env, GOTOOLCHAIN: 'local' } });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 && out.trim() ? resolve(out.trim()) : reject(new Error(`go list -m ${path} failed in ${cwd}`))));
  });
}

const istioKinds = new Set(['VirtualService', 'Gateway', 'DestinationRule']);

async function extractCrds(): Promise<void> {
  const dir = crdsDir();
  if (existsSync(join(dir, '.complete'))) return;
  await withProgress('tools', 'extracting the Istio, Gateway API, Traefik and KEDA CRDs and kwok stages from their Go modules', async () => {
    const istio = await goModDir('crds', 'istio.io/api');
    const gatewayApi = await goModDir('crds', 'sigs.k8s.io/gateway-api');
    const kwok = await goModDir('kwok', 'sigs.k8s.io/kwok');
    const traefik = await goModDir('traefik', 'github.com/traefik/traefik/v3');
    const keda = await goModDir('keda', 'github.com/kedacore/keda/v2');
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const istioCrds = parseAllDocuments(readFileSync(join(istio, 'kubernetes', 'customresourcedefinitions.gen.yaml'), 'utf8'))
      .map((d) => d.toJS())
      .filter((crd) => crd?.kind === 'CustomResourceDefinition' && crd.spec.group === 'networking.istio.io' && istioKinds.has(crd.spec.names.kind));
    if (istioCrds.length !== istioKinds.size) throw new Error(`expected ${istioKinds.size} Istio networking CRDs in ${istio}, found ${istioCrds.length}`);
    writeFileSync(join(tmp, 'istio-networking.yaml'), istioCrds.map((c) => stringify(c)).join('---\n'));
    const standard = join(gatewayApi, 'config', 'crd', 'standard');
    const gatewayCrds = readdirSync(standard)
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAllDocuments(readFileSync(join(standard, f), 'utf8')).map((d) => d.toJS()))
      .filter((doc) => doc?.kind === 'CustomResourceDefinition');
    writeFileSync(join(tmp, 'gateway-api-standard.yaml'), gatewayCrds.map((c) => stringify(c)).join('---\n'));
    // Traefik's CRDs (TraefikService among them): its kubernetesCRD provider lists every one.
    const traefikCrds = parseAllDocuments(readFileSync(join(traefik, 'docs', 'content', 'reference', 'dynamic-configuration', 'kubernetes-crd-definition-v1.yml'), 'utf8'))
      .map((d) => d.toJS())
      .filter((doc) => doc?.kind === 'CustomResourceDefinition');
    if (!traefikCrds.some((c) => c.spec.names.kind === 'TraefikService')) throw new Error(`no TraefikService CRD in ${traefik}`);
    writeFileSync(join(tmp, 'traefik.yaml'), traefikCrds.map((c) => stringify(c)).join('---\n'));
    // KEDA's CRDs: its operator runs a controller for each.
    const kedaBases = join(keda, 'config', 'crd', 'bases');
    const kedaCrds = readdirSync(kedaBases)
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAllDocuments(readFileSync(join(kedaBases, f), 'utf8')).map((d) => d.toJS()))
      .filter((doc) => doc?.kind === 'CustomResourceDefinition');
    if (!kedaCrds.some((c) => c.spec.names.kind === 'ScaledObject')) throw new Error(`no ScaledObject CRD in ${keda}`);
    writeFileSync(join(tmp, 'keda.yaml'), kedaCrds.map((c) => stringify(c)).join('---\n'));
    const stages = join(kwok, 'kustomize', 'stage');
    // Node stages only: kwok keeps the fake nodes alive, and the local cluster's pod runtime runs their pods.
    const stageFiles = ['node/fast/node-initialize.yaml', 'node/heartbeat-with-lease/node-heartbeat-with-lease.yaml'];
    writeFileSync(join(tmp, 'kwok-stages.yaml'), stageFiles.map((f) => readFileSync(join(stages, f), 'utf8').trim()).join('\n---\n') + '\n');
    writeFileSync(join(tmp, '.complete'), '');
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  });
}

/** The real node's kubelet and kube-proxy must be of the control plane's release. */
function checkNodeRelease(): void {
  const node = modVersion('kubernetes-node', 'k8s.io/kubernetes');
  const controlPlane = kubernetesVersion('current');
  if (node !== controlPlane) {
    throw new Error(`ci/tools/kubernetes-node pins k8s.io/kubernetes ${node}, the control plane ${controlPlane}: run ci/tools/kubernetes/gen-go-mod.sh ${controlPlane} kubernetes-node kubelet kube-proxy`);
  }
}

/** The tools a local cluster runs (ci/cluster/control-plane.ts): a first `npm start` builds these only. */
export function clusterTools(kubernetes: KubernetesRelease): string[] {
  // kubectl comes from the current release's build, whatever the control plane's.
  return ['helm4', 'kubernetes', ...(kubernetes === 'oldest' ? ['kubernetes-oldest'] : []), 'etcd', 'kwok', 'traefik', 'prometheus', 'keda'];
}

/** istiod must be of the release istioctl analyzes with. */
function checkIstioRelease(): void {
  const istiod = modVersion('istiod', 'istio.io/istio');
  const istioctl = modVersion('istioctl', 'istio.io/istio');
  if (istiod !== istioctl) throw new Error(`ci/tools/istiod pins istio.io/istio ${istiod}, ci/tools/istioctl ${istioctl}: pin both to one version`);
}

/**
 * Builds every tool that is not in the cache yet, or only those named in `only`; the real node's
 * tools too with `realNode`, istiod and the xDS reader with `istio`.
 */
export async function ensureTools(options: { realNode?: boolean; istio?: boolean; only?: readonly string[] } = {}): Promise<void> {
  removeStaleTemporaries();
  if (options.realNode) checkNodeRelease();
  if (options.istio) checkIstioRelease();
  const wanted = ([name, tool]: [string, GoTool]) =>
    tool.realNode ? !!options.realNode : tool.istio ? !!options.istio : !options.only || options.only.includes(name);
  const missing = Object.entries(goTools).filter((entry) => wanted(entry) && !built(...entry));
  if (missing.length > 1) {
    // Downloads wait on the network and builds on the CPUs: fetch every missing tool's modules at
    // once, then build one tool at a time (each go build already uses every core).
    await withProgress('tools', `downloading the Go modules of ${missing.map(([name]) => name).join(', ')}`, () => Promise.all(missing.map(([, tool]) => downloadGoTool(tool))));
  }
  for (const [name, tool] of missing) await buildGoTool(name, tool);
  await extractCrds();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  // `--real-node`: the real node's tools as well (kubelet, kube-proxy, containerd, CNI plugins, CoreDNS);
  // `--istio`: istiod and the xDS reader.
  await ensureTools({ realNode: process.argv.includes('--real-node'), istio: process.argv.includes('--istio') });
  log(`tools: all ready in ${join(cacheRoot(), 'tools')} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
}
