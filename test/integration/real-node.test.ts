// The local cluster's real node (ci/cluster/real-node.ts), in a cluster of the file's own: a pod that
// asks for it runs in real containers (containerd, runc) with an init container, a read-only root
// filesystem and an unprivileged user; the kubelet's own readiness probe makes it Ready; a Service's
// ClusterIP reaches it through kube-proxy's iptables rules from the cluster's network namespace; and
// deleting it delivers SIGTERM and waits the grace period before the kill. Its pods find Services by
// name through the cluster DNS (CoreDNS), and a name outside the cluster fails at once. Pods that do
// not ask for the real node keep going to the kwok nodes.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { Resolver } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../../ci/cluster/control-plane.ts';
import { busyboxImage, type ImageArchive } from '../../ci/cluster/images.ts';
import { realNodeLabel, realNodePodCidr, realNodeTaint } from '../../ci/cluster/real-node.ts';
import { log } from '../../ci/log.ts';
import { waitFor } from '../../ci/wait.ts';
import { execOk } from '../../ci/exec.ts';

const namespace = 'real-node';
const graceSeconds = 6;
/** The server container becomes ready (its probe's file appears) this long after it starts. */
const readyAfterSeconds = 5;
let cluster: ControlPlane;
let core: k8s.CoreV1Api;
let image: ImageArchive;
/** Requests the pod sends to the test when it is told to terminate (term) and while it keeps running (alive). */
const reports: { what: string; at: number }[] = [];
let reportServer: Server;

beforeAll(async () => {
  const started = Date.now();
  cluster = await startControlPlane({ realNode: true, observability: false, nodes: 1 });
  log(`real node test: cluster with a real node started in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  const provided = Date.now();
  image = busyboxImage();
  await cluster.realNode!.provideImage(image);
  log(
    `real node test: image ${image.name} built or taken from the cache and imported into containerd in ${((Date.now() - provided) / 1000).toFixed(1)}s`,
  );
  core = cluster.kubeConfig().makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({
    body: { metadata: { name: namespace, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } },
  });
  // The pod reaches the host side of the cluster's veth pair (its address masqueraded to the namespace's).
  reportServer = createServer((req, res) => {
    reports.push({ what: new URL(req.url ?? '/', 'http://x').pathname.slice(1), at: Date.now() });
    res.end('ok\n');
  });
  await new Promise<void>((resolve) => reportServer.listen(0, cluster.network.hostAddress, resolve));
});

afterAll(async () => {
  reportServer?.close();
  await cluster?.stop();
});

const restricted = {
  runAsNonRoot: true,
  runAsUser: 65532,
  runAsGroup: 65532,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/** The server: records its user and whether its root filesystem is writable, serves /www, ignores SIGTERM but reports it, and reports every second until killed. */
const serverScript = `
report() { wget -q -O /dev/null "http://$REPORT/$1" || true; }
id -u > /www/uid.txt
if (echo x > /rootfs-probe) 2>/dev/null; then echo writable; else echo read-only; fi > /www/rootfs.txt
terminating=
trap 'terminating=1; report term' TERM
httpd -f -p 8080 -h /www &
sleep ${readyAfterSeconds}
echo ready > /www/ready.txt
while true; do sleep 1; if [ -n "$terminating" ]; then report alive; fi; done
`;

function probePod(reportAddress: string): k8s.V1Pod {
  return {
    metadata: { name: 'probe', namespace, labels: { app: 'probe' } },
    spec: {
      nodeSelector: { [realNodeLabel.key]: realNodeLabel.value },
      tolerations: [
        { key: realNodeTaint.key, operator: 'Equal', value: realNodeTaint.value, effect: realNodeTaint.effect },
      ],
      terminationGracePeriodSeconds: graceSeconds,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      volumes: [{ name: 'www', emptyDir: {} }],
      initContainers: [
        {
          name: 'prepare',
          image: image.name,
          imagePullPolicy: 'Never',
          command: ['sh', '-c', 'echo "prepared by $POD_NAME" > /www/index.html'],
          env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          securityContext: restricted,
          volumeMounts: [{ name: 'www', mountPath: '/www' }],
        },
      ],
      containers: [
        {
          name: 'server',
          image: image.name,
          imagePullPolicy: 'Never',
          command: ['sh', '-c', serverScript],
          env: [{ name: 'REPORT', value: reportAddress }],
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/ready.txt', port: 8080 }, periodSeconds: 1, failureThreshold: 1 },
          securityContext: restricted,
          volumeMounts: [{ name: 'www', mountPath: '/www' }],
        },
      ],
    },
  };
}

/** GET from inside the cluster's network namespace (busybox wget), bounded in time. */
async function getInNamespace(url: string): Promise<string> {
  return (
    await execOk('ip', ['netns', 'exec', cluster.network.namespace, 'busybox', 'wget', '-q', '-O', '-', url], {
      timeoutMs: 5000,
    })
  ).stdout;
}

async function iptablesNat(): Promise<string> {
  return (
    await execOk('ip', ['netns', 'exec', cluster.network.namespace, 'iptables', '-t', 'nat', '-S', 'KUBE-SERVICES'], {
      timeoutMs: 10_000,
    })
  ).stdout;
}

/** Whether a process runs: exists and has not exited (a killed process whose parent, here the machine's init, has not reaped it yet is a zombie). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('the real node', () => {
  it('runs a pod in real containers: init container, probe-gated readiness, a Service through kube-proxy, SIGTERM and the grace period', async () => {
    const { port } = reportServer.address() as AddressInfo;
    const created = Date.now();
    await core.createNamespacedPod({ namespace, body: probePod(`${cluster.network.hostAddress}:${port}`) });
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'probe', namespace },
        spec: { selector: { app: 'probe' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });

    await waitFor(
      'the server container to run',
      120_000,
      async () => {
        const p = await core.readNamespacedPod({ name: 'probe', namespace });
        return p.status?.containerStatuses?.find((c) => c.name === 'server')?.state?.running ? true : undefined;
      },
      async () => JSON.stringify((await core.readNamespacedPod({ name: 'probe', namespace })).status, null, 1),
    );
    const runningAt = Date.now();
    const pod = await waitFor(
      'the pod on the real node to be Ready',
      120_000,
      async () => {
        const p = await core.readNamespacedPod({ name: 'probe', namespace });
        return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
      },
      async () => JSON.stringify((await core.readNamespacedPod({ name: 'probe', namespace })).status, null, 1),
    );
    const readyAt = Date.now();
    expect(pod.spec?.nodeName).toBe(cluster.realNode!.name);
    const [net, bits] = realNodePodCidr.split('/');
    expect(Number(bits)).toBe(24);
    expect(pod.status?.podIP?.startsWith(net.split('.').slice(0, 3).join('.') + '.')).toBe(true);
    const init = pod.status?.initContainerStatuses?.[0];
    expect(init?.state?.terminated?.exitCode).toBe(0);
    const server = pod.status?.containerStatuses?.find((c) => c.name === 'server');
    expect(server?.ready).toBe(true);
    expect(server?.containerID).toMatch(/^containerd:\/\//);
    // Ready only once the probe's file exists: the kubelet's own probe gated it, not the container's start.
    const startedAt = new Date(server!.state!.running!.startedAt!).getTime();
    const readySince = new Date(pod.status!.conditions!.find((c) => c.type === 'Ready')!.lastTransitionTime!).getTime();
    expect(readySince - startedAt).toBeGreaterThanOrEqual((readyAfterSeconds - 1) * 1000);
    const initDone = new Date(init!.state!.terminated!.finishedAt!).getTime();
    log(
      `real node test: server container running ${((runningAt - created) / 1000).toFixed(1)}s and pod Ready ${((readyAt - created) / 1000).toFixed(1)}s after creation (init finished ${((initDone - created) / 1000).toFixed(0)}s, ` +
        `server started ${((startedAt - created) / 1000).toFixed(0)}s after, by the API's second-resolution times; the server makes itself ready ${readyAfterSeconds}s after its start)`,
    );

    // The Service's ClusterIP is no address of the namespace: only kube-proxy's rules take a request there to the pod.
    const service = await core.readNamespacedService({ name: 'probe', namespace });
    const clusterIP = service.spec!.clusterIP!;
    await waitFor('kube-proxy to program the Service', 60_000, async () =>
      (await iptablesNat()).includes(`-d ${clusterIP}/32`) ? true : undefined,
    );
    const body = await waitFor(`the Service ${clusterIP} to answer from the cluster's network namespace`, 60_000, () =>
      getInNamespace(`http://${clusterIP}/index.html`),
    );
    expect(body).toBe('prepared by probe\n');
    expect(await getInNamespace(`http://${clusterIP}/uid.txt`)).toBe('65532\n');
    expect(await getInNamespace(`http://${clusterIP}/rootfs.txt`)).toBe('read-only\n');

    // Deletion: SIGTERM, which the server ignores after reporting it; the kubelet waits the grace period, then kills it.
    const deleted = Date.now();
    await core.deleteNamespacedPod({ name: 'probe', namespace });
    await waitFor('the pod to be gone', (graceSeconds + 60) * 1000, async () => {
      try {
        await core.readNamespacedPod({ name: 'probe', namespace });
        return undefined;
      } catch (err) {
        if ((err as { code?: number }).code === 404) return true;
        throw err;
      }
    });
    const gone = Date.now();
    // Reports still on their way from a container killed an instant ago get a moment to arrive (or not).
    await waitFor('no report for 2 s', 10_000, async () => {
      const last = reports.at(-1)?.at ?? 0;
      return Date.now() - Math.max(last, gone) >= 2000 ? true : undefined;
    });
    const term = reports.find((r) => r.what === 'term');
    expect(term, `reports: ${JSON.stringify(reports)}`).toBeDefined();
    expect(term!.at - deleted).toBeLessThan(graceSeconds * 1000);
    const alive = reports.filter((r) => r.what === 'alive');
    const lastAlive = alive.at(-1)?.at ?? 0;
    log(
      `real node test: SIGTERM reported ${((term!.at - deleted) / 1000).toFixed(1)}s after the delete, last report while terminating ${((lastAlive - deleted) / 1000).toFixed(1)}s, pod gone ${((gone - deleted) / 1000).toFixed(1)}s after (grace period ${graceSeconds}s)`,
    );
    // Still running well into the grace period (not killed at the SIGTERM)...
    expect(lastAlive - deleted).toBeGreaterThanOrEqual((graceSeconds - 2) * 1000);
    // ... and killed at its end, not left running: no report after the pod was gone, and gone soon after.
    expect(reports.filter((r) => r.at > gone + 500)).toEqual([]);
    expect(gone - deleted).toBeGreaterThanOrEqual(graceSeconds * 1000);
    expect(gone - deleted).toBeLessThan((graceSeconds + 30) * 1000);
  });

  it("resolves a Service's name for its pods through the cluster DNS, and fails at once on a name outside the cluster", async () => {
    const realNode = cluster.realNode!;
    const onRealNode = {
      nodeSelector: { [realNodeLabel.key]: realNodeLabel.value },
      tolerations: [
        {
          key: realNodeTaint.key,
          operator: 'Equal' as const,
          value: realNodeTaint.value,
          effect: realNodeTaint.effect,
        },
      ],
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      },
    };
    const readyPod = (name: string) =>
      waitFor(
        `the pod ${name} to be Ready`,
        120_000,
        async () => {
          const p = await core.readNamespacedPod({ name, namespace });
          return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
        },
        async () => JSON.stringify((await core.readNamespacedPod({ name, namespace })).status, null, 1),
      );

    // A server behind a Service, both named "named".
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'named', namespace, labels: { app: 'named' } },
        spec: {
          ...onRealNode,
          volumes: [{ name: 'www', emptyDir: {} }],
          containers: [
            {
              name: 'server',
              image: image.name,
              imagePullPolicy: 'Never',
              command: ['sh', '-c', 'echo "served by $POD_NAME" > /www/index.html && exec httpd -f -p 8080 -h /www'],
              env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
              ports: [{ name: 'http', containerPort: 8080 }],
              readinessProbe: { httpGet: { path: '/index.html', port: 8080 }, periodSeconds: 1 },
              securityContext: restricted,
              volumeMounts: [{ name: 'www', mountPath: '/www' }],
            },
          ],
        },
      },
    });
    await core.createNamespacedService({
      namespace,
      body: {
        metadata: { name: 'named', namespace },
        spec: { selector: { app: 'named' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });
    await readyPod('named');
    const clusterIP = (await core.readNamespacedService({ name: 'named', namespace })).spec!.clusterIP!;
    const fqdn = `named.${namespace}.svc.cluster.local`;
    // CoreDNS knows the Service (asked from the host, over the veth pair) and kube-proxy routes its
    // ClusterIP, before the client starts: the client asks each name once.
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([realNode.clusterDns]);
    await waitFor(`CoreDNS to answer ${fqdn}`, 30_000, async () =>
      (await resolver.resolve4(fqdn)).includes(clusterIP) ? true : undefined,
    );
    await waitFor('kube-proxy to program the Service', 60_000, async () =>
      (await iptablesNat()).includes(`-d ${clusterIP}/32`) ? true : undefined,
    );

    // The client: each lookup and request once, its results in files it then serves. wget resolves
    // through libc (the search path for `named.<namespace>.svc`, which has fewer dots than ndots:5);
    // nslookup asks the nameserver itself, and applies the search path to a name without dots only.
    // Every wait is bounded with timeout (Debian's static busybox wget crashes with its own -T).
    const clientScript = `
cat /etc/resolv.conf > /out/resolv.conf
nslookup -type=a named > /out/search.txt 2>&1
nslookup -type=a ${fqdn} > /out/nslookup.txt 2>&1
for f in short full outside; do : > /out/$f.txt; done
timeout 10 wget -q -O /out/short.txt http://named.${namespace}.svc/ 2> /out/short.err; echo $? > /out/short.rc
timeout 10 wget -q -O /out/full.txt http://${fqdn}/ 2> /out/full.err; echo $? > /out/full.rc
start=$(date +%s)
timeout 30 wget -q -O /out/outside.txt http://example.com/ 2> /out/outside.err; echo $? > /out/outside.rc
timeout 30 nslookup -type=a example.com > /out/outside-nslookup.txt 2>&1
echo $(( $(date +%s) - start )) > /out/outside.seconds
echo done > /out/done.txt
exec httpd -f -p 8080 -h /out
`;
    const clientStarted = Date.now();
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'client', namespace },
        spec: {
          ...onRealNode,
          volumes: [{ name: 'out', emptyDir: {} }],
          containers: [
            {
              name: 'client',
              image: image.name,
              imagePullPolicy: 'Never',
              command: ['sh', '-c', clientScript],
              ports: [{ name: 'http', containerPort: 8080 }],
              readinessProbe: { httpGet: { path: '/done.txt', port: 8080 }, periodSeconds: 1 },
              securityContext: restricted,
              volumeMounts: [{ name: 'out', mountPath: '/out' }],
            },
          ],
        },
      },
    });
    const client = await readyPod('client');
    log(
      `real node test: the DNS client pod was done ${((Date.now() - clientStarted) / 1000).toFixed(1)}s after its creation`,
    );
    const files = [
      'resolv.conf',
      'search.txt',
      'nslookup.txt',
      'short.rc',
      'short.txt',
      'short.err',
      'full.rc',
      'full.txt',
      'full.err',
      'outside.rc',
      'outside.err',
      'outside-nslookup.txt',
      'outside.seconds',
    ];
    const results = Object.fromEntries(
      await Promise.all(
        files.map(async (f) => [f, await getInNamespace(`http://${client.status!.podIP}:8080/${f}`)] as const),
      ),
    );
    log(`real node test: the DNS client's results: ${JSON.stringify(results)}`);
    const dns = realNode.clusterDns;
    expect(results['resolv.conf']).toBe(
      `search ${namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${dns}\noptions ndots:5\n`,
    );
    // The Service's bare name through the search path's first entry (its own namespace's).
    expect(results['search.txt']).toContain(`Name:\tnamed.${namespace}.svc.cluster.local\nAddress: ${clusterIP}\n`);
    expect(results['nslookup.txt']).toBe(
      `Server:\t\t${dns}\nAddress:\t${dns}:53\n\nName:\t${fqdn}\nAddress: ${clusterIP}\n\n`,
    );
    // <service>.<namespace>.svc through the search path, and the full name, each answered by the Service's pod.
    expect([results['short.rc'], results['short.txt'], results['short.err']]).toEqual(['0\n', 'served by named\n', '']);
    expect([results['full.rc'], results['full.txt'], results['full.err']]).toEqual(['0\n', 'served by named\n', '']);
    // No name outside the cluster: NXDOMAIN at once, never a wait for an upstream that is not there.
    expect([results['outside.rc'], results['outside.err']]).toEqual(['1\n', "wget: bad address 'example.com'\n"]);
    expect(results['outside-nslookup.txt']).toBe(
      `Server:\t\t${dns}\nAddress:\t${dns}:53\n\n** server can't find example.com: NXDOMAIN\n\n`,
    );
    expect(Number(results['outside.seconds'])).toBeLessThanOrEqual(2);
    // And from the host, over the veth pair.
    await expect(resolver.resolve4('example.com')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('keeps pods that do not ask for it on the kwok nodes', async () => {
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'plain', namespace },
        spec: {
          securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'c',
              image: 'acme/plain:1',
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
            },
          ],
        },
      },
    });
    const nodeName = await waitFor(
      'the plain pod to be scheduled',
      60_000,
      async () => (await core.readNamespacedPod({ name: 'plain', namespace })).spec?.nodeName || undefined,
    );
    expect(nodeName).toMatch(/^kwok-node-/);
    const node = await core.readNode({ name: cluster.realNode!.name });
    expect(node.spec?.taints).toContainEqual(expect.objectContaining(realNodeTaint));
    expect(node.metadata?.labels?.[realNodeLabel.key]).toBe(realNodeLabel.value);
  });

  it('stops its containers with the cluster, and leaves no process, mount or cgroup behind', async () => {
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'sleeper', namespace },
        spec: {
          nodeSelector: { [realNodeLabel.key]: realNodeLabel.value },
          tolerations: [{ key: realNodeTaint.key, operator: 'Exists' }],
          securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'c',
              image: image.name,
              imagePullPolicy: 'Never',
              command: ['sleep', '3600'],
              securityContext: restricted,
            },
          ],
        },
      },
    });
    await waitFor('the sleeper to run', 60_000, async () =>
      (await core.readNamespacedPod({ name: 'sleeper', namespace })).status?.phase === 'Running' ? true : undefined,
    );
    // Every cgroup v1 hierarchy under /sys/fs/cgroup, or the unified one at /sys/fs/cgroup itself.
    const hierarchies = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup').map((h) => join('/sys/fs/cgroup', h))];
    const cgroups = hierarchies.map((h) => join(h, cluster.realNode!.cgroupRoot)).filter((d) => existsSync(d));
    const procs = (dir: string): number[] => {
      const own = existsSync(join(dir, 'cgroup.procs'))
        ? readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
        : [];
      return [
        ...own,
        ...readdirSync(dir, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .flatMap((e) => procs(join(dir, e.name))),
      ];
    };
    const containerPids = [...new Set(cgroups.flatMap(procs))];
    const shims = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map(Number)
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cluster.realNode!.containerdSocket);
        } catch {
          return false;
        }
      });
    // The sleeper and the sandbox: at least two processes, and a shim for each pod.
    expect(containerPids.length).toBeGreaterThanOrEqual(2);
    expect(shims.length).toBeGreaterThanOrEqual(1);
    const mountsOf = () =>
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes(cluster.dir));
    expect(mountsOf().length).toBeGreaterThan(0);
    // libcni's cache of each sandbox's network (outside the cluster's directory).
    const cniResults = () => (existsSync('/var/lib/cni/results') ? readdirSync('/var/lib/cni/results') : []);
    const sandboxIds = readdirSync(
      join(cluster.dir, 'node', 'containerd', 'state', 'io.containerd.grpc.v1.cri', 'sandboxes'),
    );
    const cached = () => cniResults().filter((entry) => sandboxIds.some((id) => entry.includes(id)));
    expect(cached().length).toBeGreaterThan(0);

    await cluster.stop();
    expect([...containerPids, ...shims].filter(running)).toEqual([]);
    expect(mountsOf()).toEqual([]);
    expect(cgroups.filter((d) => existsSync(d))).toEqual([]);
    expect(cached()).toEqual([]);
    expect(existsSync(cluster.dir)).toBe(false);
  });
});
