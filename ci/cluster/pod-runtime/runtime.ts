// The local cluster's kubelet for the fake nodes: kwok keeps those nodes alive, and this runtime
// runs their pods. Each pod gets an address of its node's podCIDR, its init containers run (the
// artifact fetcher, as a local process, into a directory that stands for the pod's volume), then a
// model server listens on podIP:containerPort for every container port. The pod's status follows
// what really happens, as a kubelet writes it: Initialized when the init containers succeeded,
// Ready only once the container's readiness probe (an HTTP GET to the pod's address) succeeds. A
// pod being deleted serves on through its containers' preStop sleep hooks (within its grace
// period), then has its servers stopped, open connections cut, and is removed.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { getPriority } from 'node:os';
import { request } from 'node:http';
import { join, relative } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { agentEntrypoint, agentNodeFlags } from '../../../controller/src/desired/agent.ts';
import { KubeError, type KubeClient } from '../../../controller/src/kube/client.ts';
import { Informer } from '../../../controller/src/kube/informer.ts';
import type { KubeObject, Resource } from '../../../controller/src/kube/resources.ts';
import type { Logger } from '../../../controller/src/log.ts';
import { ModelServer } from './model-server.ts';
import { refreshEvery } from './refresh.ts';

export const podResource: Resource = { group: '', version: 'v1', kind: 'Pod', plural: 'pods', namespaced: true };
export const nodeResource: Resource = { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false };
const secretResource: Resource = { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true };
const configMapResource: Resource = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
const claimResource: Resource = {
  group: '',
  version: 'v1',
  kind: 'PersistentVolumeClaim',
  plural: 'persistentvolumeclaims',
  namespaced: true,
};
const volumeResource: Resource = {
  group: '',
  version: 'v1',
  kind: 'PersistentVolume',
  plural: 'persistentvolumes',
  namespaced: false,
};
/** The token subresource of a ServiceAccount, where a kubelet asks for the tokens of projected volumes. */
const tokenRequestResource = (serviceAccount: string): Resource => ({
  group: '',
  version: 'v1',
  kind: 'TokenRequest',
  plural: `serviceaccounts/${encodeURIComponent(serviceAccount)}/token`,
  namespaced: true,
});

/** The fetcher's entrypoint in the controller image; the runtime runs the same program from source. */
const fetcherCommand = ['node', '/app/dist/fetcher/main.js'];
const initBackoffMs = [2_000, 4_000, 8_000, 16_000, 30_000];
const isFetcher = (c: { command?: string[] }) => JSON.stringify(c.command) === JSON.stringify(fetcherCommand);
/** The model agent's entrypoint in the controller image; run from source too (with its Node flags), beside the pod's model server. */
const isAgent = (c: { command?: string[] }) => JSON.stringify(c.command) === JSON.stringify(agentEntrypoint);
/** How often a configMap volume is brought up to date (a kubelet takes up to a minute). */
const configMapRefreshMs = 2_000;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
    fieldRef?: { fieldPath: string };
  };
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { secretRef?: { name: string }; configMapRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}
interface Volume {
  name: string;
  emptyDir?: object;
  persistentVolumeClaim?: { claimName: string };
  hostPath?: { path: string; type?: string };
  configMap?: { name: string; optional?: boolean };
  projected?: { sources: { serviceAccountToken?: { audience?: string; expirationSeconds?: number; path: string } }[] };
}
export interface Pod extends KubeObject {
  spec: {
    nodeName?: string;
    serviceAccountName?: string;
    containers: Container[];
    initContainers?: Container[];
    volumes?: Volume[];
    restartPolicy?: string;
    terminationGracePeriodSeconds?: number;
  };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string; lastTransitionTime?: string }[];
  };
}
interface Node extends KubeObject {
  spec?: { podCIDR?: string };
  status?: { addresses?: { type: string; address: string }[] };
}

/**
 * Paths inside a container map to the directories that stand for its volumes (and their subPaths):
 * its mounts, and a path's directory on this machine (the longest mount that holds it; else itself).
 */
function containerPaths(container: Container, volumes: ReadonlyMap<string, string>) {
  const mounts = (container.volumeMounts ?? [])
    .map((m) => ({ path: m.mountPath, dir: volumes.get(m.name) && join(volumes.get(m.name)!, m.subPath ?? '') }))
    .filter((m): m is { path: string; dir: string } => !!m.dir);
  const hostPath = (p: string) => {
    const mount = mounts
      .filter((m) => p === m.path || p.startsWith(`${m.path}/`))
      .sort((a, b) => b.path.length - a.path.length)[0];
    return mount ? join(mount.dir, relative(mount.path, p)) : p;
  };
  return { mounts, hostPath };
}

type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; reason: string; message?: string; startedAt?: string; finishedAt: string } };

interface ContainerRecord {
  name: string;
  image: string;
  state: ContainerState;
  lastState?: ContainerState;
  restartCount: number;
  ready: boolean;
  started: boolean;
}

/** What the runtime knows and runs for one pod. */
interface PodRecord {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  ip?: string;
  hostIP: string;
  startTime: string;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  init: ContainerRecord[];
  containers: ContainerRecord[];
  initialized: boolean;
  transitions: Map<string, { status: string; time: string }>;
  servers: ModelServer[];
  fetcher?: ChildProcess;
  /** Model agents the pod runs, as local processes. */
  agents: ChildProcess[];
  abort: AbortController;
  dir: string;
  writing?: Promise<void>;
  dirty: boolean;
  /** Deletion under way (its preStop hooks running): later events of the pod change nothing. */
  terminating?: boolean;
}

const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Address allocation per node, round robin through the node's /24, so that an address is not handed out again at once. */
/**
 * A command that runs at the machine's normal priority when this runtime runs ahead of it (the local
 * cluster starts it so): an artifact fetch, many Node processes starting at once as pods start, then
 * waits behind every pod's answers instead of holding them (`nice` execs the program: its pid stays).
 */
function atNormalPriority(program: string, args: string[]): [string, string[]] {
  const niceness = getPriority();
  return niceness < 0 ? ['nice', ['-n', String(-niceness), program, ...args]] : [program, args];
}

class Addresses {
  private readonly used = new Set<string>();
  private readonly next = new Map<string, number>();

  allocate(cidr: string): string {
    const m = cidr.match(/^(\d+\.\d+\.\d+)\.0\/24$/);
    if (!m) throw new Error(`podCIDR ${cidr} is not a /24`);
    const start = this.next.get(cidr) ?? 2;
    for (let i = 0; i < 253; i++) {
      const host = ((start - 2 + i) % 253) + 2;
      const address = `${m[1]}.${host}`;
      if (this.used.has(address)) continue;
      this.used.add(address);
      this.next.set(cidr, host + 1);
      return address;
    }
    throw new Error(`no free address left in ${cidr}`);
  }

  take(address: string): void {
    this.used.add(address);
  }

  release(address: string | undefined): void {
    if (address) this.used.delete(address);
  }
}

/** At most `limit` calls at once. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = limit;
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await work();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

export interface RuntimeOptions {
  client: KubeClient;
  logger: Logger;
  /** Nodes whose pods this runtime runs: those with this label. */
  nodeSelector: string;
  /** Where pod volumes live (a directory per pod) and node directories for hostPath volumes. */
  dataDir: string;
  /** Node.js binary and fetcher source the init containers of model pods run with. */
  node: string;
  fetcherScript: string;
  /** Source of the model agent, which agent containers run (with fetcherEnv too). */
  agentScript: string;
  /** Environment every fetcher gets in addition to the container's (the local CA, say). */
  fetcherEnv: Record<string, string>;
}

export class PodRuntime {
  private readonly options: RuntimeOptions;
  private readonly log: Logger;
  private readonly pods = new Map<string, PodRecord>();
  private readonly addresses = new Addresses();
  private readonly writes = new Limiter(16);
  private readonly fetches = new Limiter(4);
  private readonly podInformer: Informer<Pod>;
  private readonly nodeInformer: Informer<Node>;
  private stopped = false;
  /** Answers each pod's servers gave to requests (probes aside), by status: what a sidecar's metrics would show. */
  private readonly answers = new Map<string, { labels: Record<string, string>; count: number }>();

  constructor(options: RuntimeOptions) {
    this.options = options;
    this.log = options.logger;
    const onPod = (pod: Pod) => this.sync(pod);
    this.podInformer = new Informer<Pod>(
      options.client,
      podResource,
      { logger: this.log },
      { onAdd: onPod, onUpdate: onPod, onDelete: (pod) => this.gone(pod) },
    );
    this.nodeInformer = new Informer<Node>(
      options.client,
      nodeResource,
      { logger: this.log, labelSelector: options.nodeSelector },
      {
        // A node that shows up late may have pods waiting for it.
        onAdd: () => {
          for (const pod of this.podInformer.list()) this.sync(pod);
        },
      },
    );
  }

  private countAnswer(namespace: string, pod: string, instance: string, status: number): void {
    const key = `${namespace}/${pod}/${status}`;
    const entry = this.answers.get(key) ?? { labels: { namespace, pod, instance, code: String(status) }, count: 0 };
    entry.count++;
    this.answers.set(key, entry);
  }

  /** Prometheus text of the answers per pod: local_pod_requests_total{namespace, pod, instance, code}. */
  metrics(): string {
    const lines = [
      '# HELP local_pod_requests_total Requests the local pods answered (readiness probes aside), by status.',
      '# TYPE local_pod_requests_total counter',
    ];
    for (const { labels, count } of this.answers.values()) {
      lines.push(
        `local_pod_requests_total{${Object.entries(labels)
          .map(([k, v]) => `${k}="${v}"`)
          .join(',')}} ${count}`,
      );
    }
    return `${lines.join('\n')}\n`;
  }

  async start(): Promise<void> {
    this.nodeInformer.start();
    await this.nodeInformer.waitForSync();
    this.podInformer.start();
    await this.podInformer.waitForSync();
  }

  stop(): void {
    this.stopped = true;
    this.podInformer.stop();
    this.nodeInformer.stop();
    for (const record of this.pods.values()) this.halt(record);
  }

  private node(name: string | undefined): Node | undefined {
    return name ? this.nodeInformer.get(undefined, name) : undefined;
  }

  private sync(pod: Pod): void {
    if (this.stopped) return;
    const uid = pod.metadata.uid!;
    const record = this.pods.get(uid);
    if (pod.metadata.deletionTimestamp) {
      void this.terminate(pod, record);
      return;
    }
    if (record || !this.node(pod.spec.nodeName)) return;
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    void this.run(pod).catch((err: unknown) =>
      this.log.error({ pod: `${pod.metadata.namespace}/${pod.metadata.name}`, err }, 'pod failed to start'),
    );
  }

  private gone(pod: Pod): void {
    const record = this.pods.get(pod.metadata.uid!);
    if (record) this.forget(record);
  }

  /** Stops everything the pod runs, at once. */
  private halt(record: PodRecord): void {
    record.abort.abort();
    for (const server of record.servers) server.stop();
    record.servers = [];
    if (record.fetcher && record.fetcher.exitCode === null) record.fetcher.kill('SIGKILL');
    // An agent drains on SIGTERM (requests in flight, captured records), then the grace period ends.
    for (const agent of record.agents) {
      if (agent.exitCode !== null) continue;
      agent.kill('SIGTERM');
      setTimeout(() => agent.exitCode === null && agent.kill('SIGKILL'), 10_000).unref();
    }
    record.agents = [];
  }

  private forget(record: PodRecord): void {
    this.halt(record);
    this.pods.delete(record.uid);
    this.addresses.release(record.ip);
    // Off the event loop: a pod's files (its model among them) removed at once held every pod's answers.
    void rm(record.dir, { recursive: true, force: true }).catch((err: unknown) =>
      this.log.warn(
        { pod: `${record.namespace}/${record.name}`, err: (err as Error).message },
        'pod files not removed',
      ),
    );
  }

  private async terminate(pod: Pod, record: PodRecord | undefined): Promise<void> {
    if (record?.terminating) return;
    if (record) {
      record.terminating = true;
      // preStop sleep hooks, as a kubelet runs them: the pod serves on, within its grace period,
      // while the Service's endpoints drop it and the data plane catches up.
      const sleep = Math.max(0, ...pod.spec.containers.map((c) => c.lifecycle?.preStop?.sleep?.seconds ?? 0));
      const grace =
        (pod.metadata as { deletionGracePeriodSeconds?: number }).deletionGracePeriodSeconds ??
        pod.spec.terminationGracePeriodSeconds ??
        30;
      if (sleep > 0 && !this.stopped) await delay(Math.min(sleep, grace) * 1000);
      this.halt(record);
    }
    if (!record && !this.node(pod.spec.nodeName)) return;
    try {
      await this.options.client.delete(podResource, pod.metadata.namespace, pod.metadata.name, {
        gracePeriodSeconds: 0,
        uid: pod.metadata.uid,
      });
    } catch (err) {
      // Another delete won, or the pod changed: the next event brings it back here.
      if (!(err instanceof KubeError && (err.code === 409 || err.code === 404)))
        this.log.warn({ pod: pod.metadata.name, err }, 'could not remove a terminated pod');
    }
    if (record) this.forget(record);
  }

  private async run(pod: Pod): Promise<void> {
    const node = this.node(pod.spec.nodeName)!;
    const cidr = node.spec?.podCIDR;
    if (!cidr) throw new Error(`node ${node.metadata.name} has no spec.podCIDR`);
    const uid = pod.metadata.uid!;
    const existing = pod.status?.podIP;
    const record: PodRecord = {
      uid,
      namespace: pod.metadata.namespace!,
      name: pod.metadata.name,
      node: node.metadata.name,
      hostIP: node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '',
      startTime: now(),
      phase: 'Pending',
      init: (pod.spec.initContainers ?? []).map((c) => ({
        name: c.name,
        image: c.image,
        state: { waiting: { reason: 'PodInitializing' } },
        restartCount: 0,
        ready: false,
        started: false,
      })),
      containers: pod.spec.containers.map((c) => ({
        name: c.name,
        image: c.image,
        state: { waiting: { reason: 'PodInitializing' } },
        restartCount: 0,
        ready: false,
        started: false,
      })),
      initialized: false,
      transitions: new Map(),
      servers: [],
      agents: [],
      abort: new AbortController(),
      dir: join(this.options.dataDir, 'pods', uid),
      dirty: false,
    };
    this.pods.set(uid, record);
    if (existing) {
      this.addresses.take(existing);
      record.ip = existing;
    } else {
      record.ip = this.addresses.allocate(cidr);
    }
    const signal = record.abort.signal;
    let volumes: Map<string, string>;
    // A volume that cannot be mounted keeps the pod in ContainerCreating, retried as a kubelet does.
    for (;;) {
      try {
        volumes = await this.volumes(pod, record);
        break;
      } catch (err) {
        for (const c of [...record.init, ...record.containers])
          c.state = {
            waiting: { reason: 'ContainerCreating', message: `MountVolume.SetUp failed: ${(err as Error).message}` },
          };
        await this.writeStatus(record);
        await delay(5000, undefined, { signal }).catch(() => undefined);
        if (signal.aborted) return;
      }
    }
    await this.writeStatus(record);

    for (const [i, container] of (pod.spec.initContainers ?? []).entries()) {
      if (!(await this.runToCompletion(pod, record, record.init[i], container, volumes, true))) return;
    }
    if (signal.aborted) return;
    record.initialized = true;
    record.phase = 'Running';

    // A pod of the fetcher alone (hostPath clean-up) runs to completion, as a Job's pod would.
    if (pod.spec.containers.every((c) => isFetcher(c))) {
      const restart = pod.spec.restartPolicy !== 'Never';
      const results = await Promise.all(
        pod.spec.containers.map((c, i) => this.runToCompletion(pod, record, record.containers[i], c, volumes, restart)),
      );
      if (signal.aborted) return;
      record.phase = results.every(Boolean) ? 'Succeeded' : 'Failed';
      await this.writeStatus(record);
      return;
    }

    const probes: Promise<void>[] = [];
    for (const [i, container] of pod.spec.containers.entries()) {
      const state = record.containers[i];
      try {
        const env = await this.environment(pod, container);
        if (isAgent(container)) {
          this.runAgent(record, state, container, volumes, env);
          state.state = { running: { startedAt: now() } };
          state.started = true;
          if (container.readinessProbe?.httpGet) probes.push(this.probe(record, i, container));
          else state.ready = true;
          continue;
        }
        const modelMount = container.volumeMounts?.find((m) => m.mountPath === env.MODEL_PATH);
        const modelDir =
          modelMount && volumes.get(modelMount.name)
            ? join(volumes.get(modelMount.name)!, modelMount.subPath ?? '')
            : undefined;
        // The server listens on every declared port, and on the probe's port (a real process listens
        // where it listens, declared or not).
        const ports = new Set((container.ports ?? []).map((p) => p.containerPort));
        const probePort = container.readinessProbe?.httpGet?.port;
        if (typeof probePort === 'number') ports.add(probePort);
        for (const port of ports) {
          const server = new ModelServer({
            identity: {
              pod: pod.metadata.name,
              namespace: record.namespace,
              node: record.node,
              container: container.name,
              image: container.image,
              model: pod.metadata.labels?.['app.kubernetes.io/name'],
              instance: pod.metadata.labels?.['ml-operator.dev/model-instance'],
              version: pod.metadata.labels?.['ml-operator.dev/version'],
            },
            address: record.ip,
            port,
            readinessPath: container.readinessProbe?.httpGet?.path ?? '/',
            env,
            modelDir,
            onAnswer: (status) =>
              this.countAnswer(
                record.namespace,
                pod.metadata.name,
                pod.metadata.labels?.['ml-operator.dev/model-instance'] ?? '',
                status,
              ),
          });
          await server.listen();
          if (signal.aborted) {
            server.stop();
            return;
          }
          record.servers.push(server);
        }
        state.state = { running: { startedAt: now() } };
        state.started = true;
        if (container.readinessProbe?.httpGet) probes.push(this.probe(record, i, container));
        else state.ready = true;
      } catch (err) {
        state.state = {
          terminated: { exitCode: 1, reason: 'Error', message: (err as Error).message, finishedAt: now() },
        };
        this.log.warn(
          { pod: `${record.namespace}/${record.name}`, container: container.name, err: (err as Error).message },
          'container failed to start',
        );
      }
    }
    await this.writeStatus(record);
    await Promise.all(probes);
  }

  /**
   * Writes a ConfigMap's keys as files of its volume, as a kubelet does (a missing optional one is an
   * empty volume). Paths of the pod's other volumes written in the files (a `file://` destination
   * under a mount) are the directories that stand for those volumes here.
   */
  private async syncConfigMap(
    pod: Pod,
    record: PodRecord,
    volume: string,
    source: { name: string; optional?: boolean },
    dir: string,
    dirs: Map<string, string>,
  ): Promise<void> {
    const cm = await this.options.client.get<KubeObject & { data?: Record<string, string> }>(
      configMapResource,
      record.namespace,
      source.name,
    );
    if (!cm && !source.optional) throw new Error(`configmap "${source.name}" not found`);
    const mounts = pod.spec.containers.flatMap((c) => c.volumeMounts ?? []).filter((m) => m.name !== volume);
    for (const [key, text] of Object.entries(cm?.data ?? {})) {
      let content = text;
      for (const m of mounts)
        if (dirs.has(m.name))
          content = content.split(`file://${m.mountPath}`).join(`file://${join(dirs.get(m.name)!, m.subPath ?? '')}`);
      const file = join(dir, key);
      if (existsSync(file) && readFileSync(file, 'utf8') === content) continue;
      writeFileSync(`${file}.tmp`, content);
      renameSync(`${file}.tmp`, file);
    }
    if (!cm) for (const f of readdirSync(dir)) rmSync(join(dir, f), { force: true });
  }

  /**
   * Runs a model agent container as a local process beside the pod's servers: it listens on the pod's
   * address (a pod's loopback is its address here), its paths are those of the pod's volumes.
   */
  private runAgent(
    record: PodRecord,
    state: ContainerRecord,
    container: Container,
    volumes: Map<string, string>,
    env: Record<string, string>,
  ): void {
    const { hostPath } = containerPaths(container, volumes);
    const args = (container.args ?? []).map((a) => {
      const [flag, value] = a.split(/=(.*)/s);
      if (value === undefined) return a;
      const local = value
        .replace(/^0\.0\.0\.0:/, `${record.ip}:`)
        .replace(/^http:\/\/127\.0\.0\.1:/, `http://${record.ip}:`);
      return `${flag}=${local.startsWith('/') ? hostPath(local) : local}`;
    });
    const log = join(record.dir, `${container.name}.log`);
    const logFd = openSync(log, 'a');
    const child = spawn(this.options.node, [...agentNodeFlags, this.options.agentScript, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, ...this.options.fetcherEnv },
      stdio: ['ignore', 'ignore', logFd],
    });
    closeSync(logFd);
    record.agents.push(child);
    child.once('exit', (code, signal) => {
      if (record.abort.signal.aborted) return;
      const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().slice(-2000) : '';
      state.state = {
        terminated: {
          exitCode: code ?? 137,
          reason: 'Error',
          message: tail || `exited (${signal ?? code})`,
          finishedAt: now(),
        },
      };
      state.ready = false;
      this.log.warn(
        {
          pod: `${record.namespace}/${record.name}`,
          container: container.name,
          exitCode: code,
          signal,
          log: tail.slice(-500),
        },
        'agent exited',
      );
      void this.writeStatus(record);
    });
  }

  /** Directories that stand for the pod's volumes, by volume name. */
  private async volumes(pod: Pod, record: PodRecord): Promise<Map<string, string>> {
    const dirs = new Map<string, string>();
    const configMaps: { volume: string; source: { name: string; optional?: boolean }; dir: string }[] = [];
    for (const v of pod.spec.volumes ?? []) {
      let dir: string | undefined;
      if (v.emptyDir) dir = join(record.dir, 'volumes', v.name);
      else if (v.projected) {
        // As a kubelet does: a token of the pod's ServiceAccount for each serviceAccountToken source,
        // bound to the pod, from the API server's TokenRequest.
        dir = join(record.dir, 'volumes', v.name);
        mkdirSync(dir, { recursive: true });
        for (const source of v.projected.sources) {
          const token = source.serviceAccountToken;
          if (!token) continue;
          const serviceAccount = pod.spec.serviceAccountName || 'default';
          const issued = await this.options.client.create<KubeObject & { status?: { token?: string } }>(
            tokenRequestResource(serviceAccount),
            {
              apiVersion: 'authentication.k8s.io/v1',
              kind: 'TokenRequest',
              metadata: { namespace: record.namespace },
              spec: {
                ...(token.audience ? { audiences: [token.audience] } : {}),
                expirationSeconds: token.expirationSeconds ?? 3600,
                boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, uid: pod.metadata.uid },
              },
            } as KubeObject,
          );
          writeFileSync(join(dir, token.path), issued.status?.token ?? '', { mode: 0o600 });
        }
      } else if (v.hostPath) dir = this.nodeDirectory(record.node, v.hostPath);
      else if (v.configMap) {
        dir = join(record.dir, 'volumes', v.name);
        configMaps.push({ volume: v.name, source: v.configMap, dir });
      } else if (v.persistentVolumeClaim) {
        const claim = await this.options.client.get<KubeObject & { spec: { volumeName?: string } }>(
          claimResource,
          record.namespace,
          v.persistentVolumeClaim.claimName,
        );
        const volume = claim?.spec.volumeName
          ? await this.options.client.get<KubeObject & { spec: { hostPath?: { path: string; type?: string } } }>(
              volumeResource,
              undefined,
              claim.spec.volumeName,
            )
          : undefined;
        if (volume?.spec.hostPath) dir = this.nodeDirectory(record.node, volume.spec.hostPath);
        else dir = join(record.dir, 'volumes', v.name);
      }
      if (dir) {
        mkdirSync(dir, { recursive: true });
        dirs.set(v.name, dir);
      }
    }
    // Written once every other volume has its directory, which the files may name.
    for (const { volume, source, dir } of configMaps) {
      await this.syncConfigMap(pod, record, volume, source, dir, dirs);
      refreshEvery(
        configMapRefreshMs,
        () =>
          this.syncConfigMap(pod, record, volume, source, dir, dirs).catch((err: unknown) =>
            this.log.debug({ pod: record.name, err }, 'configMap volume not refreshed'),
          ),
        record.abort.signal,
      );
    }
    return dirs;
  }

  /** A hostPath directory of a node (under `<data>/nodes/<node>`): type Directory must exist, as on a real node. */
  private nodeDirectory(node: string, hostPath: { path: string; type?: string }): string {
    const dir = join(this.options.dataDir, 'nodes', node, hostPath.path);
    if (hostPath.type === 'Directory' && !existsSync(dir))
      throw new Error(`hostPath type check failed: ${hostPath.path} is not a directory on node ${node}`);
    return dir;
  }

  private async environment(pod: Pod, container: Container): Promise<Record<string, string>> {
    const { client } = this.options;
    const namespace = pod.metadata.namespace;
    const env: Record<string, string> = {};
    const dataOf = async (r: Resource, name: string): Promise<Record<string, string>> => {
      const obj = await client.get<KubeObject & { data?: Record<string, string> }>(r, namespace, name);
      if (!obj) throw new Error(`${r.kind} ${namespace}/${name} not found`);
      const data = obj.data ?? {};
      return r === secretResource
        ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]))
        : data;
    };
    for (const from of container.envFrom ?? []) {
      if (from.secretRef) Object.assign(env, await dataOf(secretResource, from.secretRef.name));
      if (from.configMapRef) Object.assign(env, await dataOf(configMapResource, from.configMapRef.name));
    }
    const fields: Record<string, string | undefined> = {
      'metadata.name': pod.metadata.name,
      'metadata.namespace': namespace,
      'metadata.uid': pod.metadata.uid,
      'spec.nodeName': pod.spec.nodeName,
      'status.podIP': this.pods.get(pod.metadata.uid!)?.ip,
    };
    for (const e of container.env ?? []) {
      if (e.value !== undefined) env[e.name] = e.value;
      if (e.valueFrom?.fieldRef) env[e.name] = fields[e.valueFrom.fieldRef.fieldPath] ?? '';
      const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
      if (ref) {
        const data = await dataOf(e.valueFrom?.secretKeyRef ? secretResource : configMapResource, ref.name).catch(
          (err: unknown): Record<string, string> => {
            if (ref.optional) return {};
            throw err;
          },
        );
        if (data[ref.key] !== undefined) env[e.name] = data[ref.key];
        else if (!ref.optional) throw new Error(`couldn't find key ${ref.key} in ${ref.name}`);
      }
    }
    return env;
  }

  /**
   * Runs a container to completion, again with back-off after a failure when `restart` says so; true
   * once it succeeded. Only the artifact fetcher (init containers, clean-up pods) can run this way.
   */
  private async runToCompletion(
    pod: Pod,
    record: PodRecord,
    state: ContainerRecord,
    container: Container,
    volumes: Map<string, string>,
    restart: boolean,
  ): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (record.abort.signal.aborted) return false;
      if (await this.runFetcher(pod, record, state, container, volumes)) return true;
      if (!restart) return false;
      const wait = initBackoffMs[Math.min(attempt, initBackoffMs.length - 1)];
      state.lastState = state.state;
      state.state = {
        waiting: {
          reason: 'CrashLoopBackOff',
          message: `back-off ${wait / 1000}s restarting failed container=${container.name} pod=${pod.metadata.name}`,
        },
      };
      await this.writeStatus(record);
      await delay(wait, undefined, { signal: record.abort.signal }).catch(() => undefined);
    }
  }

  /** Runs the fetcher of a container once, as a local process; true when it succeeded. */
  private async runFetcher(
    pod: Pod,
    record: PodRecord,
    state: ContainerRecord,
    container: Container,
    volumes: Map<string, string>,
  ): Promise<boolean> {
    let startedAt = now();
    const finish = async (exitCode: number, message: string): Promise<boolean> => {
      state.state = {
        terminated: {
          exitCode,
          reason: exitCode === 0 ? 'Completed' : 'Error',
          ...(message ? { message } : {}),
          startedAt,
          finishedAt: now(),
        },
      };
      if (exitCode === 0) state.ready = true;
      else state.restartCount++;
      await this.writeStatus(record);
      return exitCode === 0;
    };
    if (!isFetcher(container)) {
      return finish(
        128,
        `the local cluster's pod runtime runs only the artifact fetcher (${fetcherCommand.join(' ')}) to completion, not ${container.image}`,
      );
    }
    let env: Record<string, string>;
    try {
      env = await this.environment(pod, container);
    } catch (err) {
      return finish(128, (err as Error).message);
    }
    const { mounts, hostPath } = containerPaths(container, volumes);
    const args = (container.args ?? []).map(hostPath);
    // Files the container is told about in its environment (a projected token's path) are in its volumes too.
    for (const [name, value] of Object.entries(env))
      if (value.startsWith('/') && mounts.some((m) => value.startsWith(`${m.path}/`))) env[name] = hostPath(value);
    const tmp = mounts.find((m) => m.path === '/tmp')?.dir;
    // At most a few fetchers run at once on this machine: one waiting for its turn says so, as a pod
    // whose image is still being pulled would.
    state.state = {
      waiting: { reason: 'ContainerCreating', message: "waiting for one of the local runtime's artifact fetch slots" },
    };
    await this.writeStatus(record);
    const queued = Date.now();
    return this.fetches.run(async () => {
      if (record.abort.signal.aborted) return false;
      const waitedMs = Date.now() - queued;
      if (waitedMs >= 10_000)
        this.log.info({ pod: `${record.namespace}/${record.name}`, waitedMs }, 'artifact fetch slot after a wait');
      startedAt = now();
      state.state = { running: { startedAt } };
      void this.writeStatus(record);
      const fetchStarted = Date.now();
      const [program, argv] = atNormalPriority(this.options.node, [this.options.fetcherScript, ...args]);
      const child = spawn(program, argv, {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          ...env,
          ...this.options.fetcherEnv,
          ...(tmp ? { TMPDIR: tmp } : {}),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      record.fetcher = child;
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 137)));
      record.fetcher = undefined;
      if (Date.now() - fetchStarted >= 20_000)
        this.log.warn(
          { pod: `${record.namespace}/${record.name}`, fetchMs: Date.now() - fetchStarted, exitCode: code },
          'slow artifact fetch',
        );
      if (record.abort.signal.aborted) return false;
      // As kubelet's FallbackToLogsOnError: the message of a failed container is the end of its log.
      const lastError = output
        .trim()
        .split('\n')
        .reverse()
        .map((l) => {
          try {
            return JSON.parse(l) as { level?: string; msg?: string };
          } catch {
            return undefined;
          }
        })
        .find((l) => l?.level === 'error');
      if (code !== 0)
        this.log.info(
          {
            pod: `${record.namespace}/${record.name}`,
            container: container.name,
            exitCode: code,
            message: lastError?.msg,
          },
          'init container failed',
        );
      return finish(code, code === 0 ? '' : (lastError?.msg ?? output.trim().slice(-2000)));
    });
  }

  /** The container's readiness probe, as a kubelet runs it, until the pod stops. */
  private async probe(record: PodRecord, index: number, container: Container): Promise<void> {
    const probe = container.readinessProbe!;
    const get = probe.httpGet!;
    const port =
      typeof get.port === 'number'
        ? get.port
        : (container.ports?.find((p) => p.name === get.port)?.containerPort ?? Number(get.port));
    const period = (probe.periodSeconds ?? 10) * 1000;
    const timeout = (probe.timeoutSeconds ?? 1) * 1000;
    const failureThreshold = probe.failureThreshold ?? 3;
    const successThreshold = probe.successThreshold ?? 1;
    const signal = record.abort.signal;
    const state = record.containers[index];
    let successes = 0;
    let failures = 0;
    await delay((probe.initialDelaySeconds ?? 0) * 1000, undefined, { signal }).catch(() => undefined);
    while (!signal.aborted) {
      const ok = await httpProbe(record.ip!, port, get.path ?? '/', timeout);
      if (signal.aborted) return;
      if (ok) {
        successes++;
        failures = 0;
      } else {
        failures++;
        successes = 0;
      }
      const ready = state.ready ? failures < failureThreshold : successes >= successThreshold;
      if (ready !== state.ready) {
        state.ready = ready;
        await this.writeStatus(record);
      }
      await delay(period, undefined, { signal }).catch(() => undefined);
    }
  }

  /** Writes the pod's status as the runtime knows it; writes that pile up while one is in flight collapse into one. */
  private async writeStatus(record: PodRecord): Promise<void> {
    record.dirty = true;
    if (record.writing) return record.writing;
    record.writing = (async () => {
      while (record.dirty && !record.abort.signal.aborted) {
        record.dirty = false;
        const body = this.status(record);
        try {
          await this.writes.run(() => this.options.client.applyStatus(podResource, body));
        } catch (err) {
          if (err instanceof KubeError && (err.code === 404 || err.code === 409 || err.code === 422)) return;
          this.log.warn(
            { pod: `${record.namespace}/${record.name}`, err: (err as Error).message },
            'could not write the pod status; retrying',
          );
          record.dirty = true;
          await delay(1000);
        }
      }
    })().finally(() => (record.writing = undefined));
    return record.writing;
  }

  private status(record: PodRecord): KubeObject {
    const containersReady = record.containers.every((c) => c.ready);
    const condition = (type: string, ok: boolean, reason?: string, message?: string) => {
      const status = ok ? 'True' : 'False';
      const previous = record.transitions.get(type);
      const time = previous && previous.status === status ? previous.time : now();
      record.transitions.set(type, { status, time });
      return { type, status, lastTransitionTime: time, ...(ok || !reason ? {} : { reason, message }) };
    };
    const notReady = record.containers.filter((c) => !c.ready).map((c) => c.name);
    const notInitialized = record.init.filter((c) => !c.ready).map((c) => c.name);
    const containerStatus = (c: ContainerRecord) => ({
      name: c.name,
      image: c.image,
      imageID: '',
      containerID: `local://${record.uid}/${c.name}`,
      ready: c.ready,
      started: c.started,
      restartCount: c.restartCount,
      state: c.state,
      ...(c.lastState ? { lastState: c.lastState } : {}),
    });
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: record.name, namespace: record.namespace },
      status: {
        phase: record.phase,
        hostIP: record.hostIP,
        hostIPs: [{ ip: record.hostIP }],
        podIP: record.ip,
        podIPs: [{ ip: record.ip }],
        startTime: record.startTime,
        conditions: [
          condition('PodReadyToStartContainers', true),
          condition(
            'Initialized',
            record.initialized,
            'ContainersNotInitialized',
            `containers with incomplete status: [${notInitialized.join(' ')}]`,
          ),
          condition(
            'ContainersReady',
            record.initialized && containersReady,
            'ContainersNotReady',
            `containers with unready status: [${notReady.join(' ')}]`,
          ),
          condition(
            'Ready',
            record.initialized && containersReady,
            'ContainersNotReady',
            `containers with unready status: [${notReady.join(' ')}]`,
          ),
        ],
        ...(record.init.length ? { initContainerStatuses: record.init.map(containerStatus) } : {}),
        containerStatuses: record.containers.map(containerStatus),
      },
    };
  }
}

function httpProbe(address: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: address,
        port,
        path,
        method: 'GET',
        agent: false,
        timeout: timeoutMs,
        headers: { 'user-agent': 'kube-probe/local' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400));
        res.on('error', () => resolve(false));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}
