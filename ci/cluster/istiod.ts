// istiod in the local cluster: pilot-discovery of the istioctl module's Istio (ci/tools/istiod), run
// as the cluster's other components are, a process in its network namespace, here with a kubeconfig
// of its own ServiceAccount and the rights Istio's chart grants it, every CRD of Istio's chart, and
// a mesh config file. It signs its own certificates (its CA, as a default install). It serves xDS in
// plaintext on :15010 of the namespace's address, where ci/tools/istiod/xds-reader asks for what an
// ingress gateway gets. Off by default: startControlPlane({ istio: true }), `npm run cluster --
// --istio`, or startIstiod() from the test files that read it.
//
// Left out of what Istio's chart installs, because nothing here needs it and it would act on the
// cluster other test files share: the sidecar injection and validation webhooks (no Envoy runs here
// to be injected), and istiod's Gateway API controller (the cluster's Gateway API implementation is
// Traefik; istiod would claim GatewayClasses and write Deployments).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseAllDocuments, stringify } from 'yaml';
import { ensureTools, istioCrdsFile, toolPath } from '../tools/build.ts';
import { waitFor } from '../wait.ts';
import { kubectl } from './control-plane.ts';

export const istioNamespace = 'istio-system';
const serviceAccount = 'istiod';
/** istiod's ports, Istio's own, on the cluster namespace's address; the debug HTTP port moved off 8080. */
export const istiodPorts = { xds: 15010, secureXds: 15012, webhooks: 15017, monitoring: 15014, debug: 15080 } as const;

export interface Istiod {
  /** Plaintext xDS (ADS), `address:15010`: xds-reader --xds=<this>. */
  readonly xdsAddress: string;
  /** istiod's debug interface (/ready, /debug/configz, /debug/syncz ...). */
  readonly debugUrl: string;
  readonly logFile: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export interface IstiodOptions {
  /** The cluster administrator's kubeconfig. */
  kubeconfigPath: string;
  /** The cluster's network namespace and its address. */
  network: { namespace: string; address: string };
  /** Directory for istiod's kubeconfig, mesh config, files and log. */
  dir: string;
  /**
   * The namespaces istiod reads Services, endpoints and Istio config from (the mesh config's
   * discoverySelectors), istio-system always among them. Default: all, as a real install.
   */
  namespaces?: string[];
  /** Starts a program in the cluster's network namespace with its output in `logFile` (the control plane's own components); by default a child of this process. */
  start?: (
    name: string,
    program: string,
    args: string[],
    env: NodeJS.ProcessEnv,
  ) => { child: ChildProcess; logFile: string };
  progress?: (message: string) => void;
}

/** The rules of Istio's chart for istiod (istio-discovery's clusterrole.yaml and role.yaml), without those of the parts left out. */
function rbacObjects(): unknown[] {
  const read = ['get', 'list', 'watch'];
  const write = ['get', 'watch', 'list', 'update', 'patch', 'create', 'delete'];
  const name = 'ml-operator-local-istiod';
  const subjects = [{ kind: 'ServiceAccount', name: serviceAccount, namespace: istioNamespace }];
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: serviceAccount, namespace: istioNamespace } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name },
      rules: [
        // Revision tags live on the webhook configurations: istiod is not ready until it has read them.
        {
          apiGroups: ['admissionregistration.k8s.io'],
          resources: ['mutatingwebhookconfigurations'],
          verbs: ['get', 'list', 'watch', 'update', 'patch'],
        },
        {
          apiGroups: ['admissionregistration.k8s.io'],
          resources: ['validatingwebhookconfigurations'],
          verbs: ['get', 'list', 'watch', 'update'],
        },
        {
          apiGroups: [
            'config.istio.io',
            'security.istio.io',
            'networking.istio.io',
            'authentication.istio.io',
            'rbac.istio.io',
            'telemetry.istio.io',
            'extensions.istio.io',
          ],
          resources: ['*'],
          verbs: read,
        },
        {
          apiGroups: ['networking.istio.io'],
          resources: ['workloadentries', 'workloadentries/status', 'serviceentries/status'],
          verbs: write,
        },
        { apiGroups: ['security.istio.io'], resources: ['authorizationpolicies/status'], verbs: write },
        { apiGroups: [''], resources: ['services/status'], verbs: write },
        { apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], verbs: read },
        { apiGroups: [''], resources: ['pods', 'nodes', 'services', 'namespaces', 'endpoints'], verbs: read },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: read },
        { apiGroups: ['networking.k8s.io'], resources: ['ingresses', 'ingressclasses'], verbs: read },
        { apiGroups: ['networking.k8s.io'], resources: ['ingresses/status'], verbs: ['*'] },
        // Its CA's namespace controller writes the root certificate (istio-ca-root-cert) into each namespace.
        { apiGroups: [''], resources: ['configmaps'], verbs: ['create', 'get', 'list', 'watch', 'update'] },
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
        { apiGroups: ['gateway.networking.k8s.io', 'gateway.networking.x-k8s.io'], resources: ['*'], verbs: read },
        // Gateways' TLS certificates (credentialName), and other clusters' kubeconfigs.
        { apiGroups: [''], resources: ['secrets'], verbs: read },
        {
          apiGroups: ['multicluster.x-k8s.io'],
          resources: ['serviceexports'],
          verbs: ['get', 'watch', 'list', 'create', 'delete'],
        },
        { apiGroups: ['multicluster.x-k8s.io'], resources: ['serviceimports'], verbs: read },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects,
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: serviceAccount, namespace: istioNamespace },
      rules: [
        // Its CA's key and certificate (istio-ca-secret).
        { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'get', 'watch', 'list', 'update', 'delete'] },
        { apiGroups: [''], resources: ['configmaps'], verbs: ['delete'] },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'update', 'patch', 'create'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: serviceAccount, namespace: istioNamespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: serviceAccount },
      subjects,
    },
  ];
}

/** Installs the CRDs of Istio's chart that the cluster lacks (it has the networking ones istioctl analyzes). */
async function installCrds(kubeconfigPath: string, dir: string): Promise<number> {
  const installed = new Set(
    (await kubectl(kubeconfigPath, ['get', 'crd', '-o', 'name'])).split('\n').map((l) => l.replace(/^.*\//, '').trim()),
  );
  const crds = parseAllDocuments(readFileSync(istioCrdsFile(), 'utf8'))
    .map((d) => d.toJS() as { kind?: string; metadata: { name: string } } | null)
    .filter(
      (c): c is { kind: string; metadata: { name: string } } =>
        c?.kind === 'CustomResourceDefinition' && !installed.has(c.metadata.name),
    );
  if (crds.length === 0) return 0;
  const file = join(dir, 'istio-crds.yaml');
  writeFileSync(file, crds.map((c) => stringify(c)).join('---\n'));
  await kubectl(kubeconfigPath, ['apply', '--server-side', '-f', file]);
  await kubectl(kubeconfigPath, ['wait', '--for=condition=Established', '--timeout=60s', '-f', file]);
  return crds.length;
}

function startChild(
  name: string,
  program: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  dir: string,
  netns: string,
): { child: ChildProcess; logFile: string } {
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn('ip', ['netns', 'exec', netns, program, ...args], { cwd: dir, stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  return { child, logFile };
}

export async function startIstiod(o: IstiodOptions): Promise<Istiod> {
  const progress = o.progress ?? (() => undefined);
  const started = Date.now();
  await ensureTools({ istio: true, only: [] });
  const dir = join(o.dir, 'istiod');
  mkdirSync(dir, { recursive: true });
  const crds = await installCrds(o.kubeconfigPath, dir);
  progress(`istiod: ${crds} more CRDs of Istio's chart installed`);
  await kubectl(
    o.kubeconfigPath,
    ['apply', '--server-side', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: istioNamespace } }),
  );
  await kubectl(
    o.kubeconfigPath,
    ['apply', '--server-side', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbacObjects() }),
  );

  // Its own kubeconfig, with a token of its ServiceAccount, as the pod's would be.
  const admin = JSON.parse(await kubectl(o.kubeconfigPath, ['config', 'view', '--raw', '-o', 'json'])) as {
    clusters: { cluster: Record<string, string> }[];
  };
  const token = (
    await kubectl(o.kubeconfigPath, ['create', 'token', serviceAccount, '-n', istioNamespace, '--duration=24h'])
  ).trim();
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'local', cluster: admin.clusters[0].cluster }],
      users: [{ name: serviceAccount, user: { token } }],
      contexts: [{ name: 'local', context: { cluster: 'local', user: serviceAccount } }],
      'current-context': 'local',
    }),
  );
  // Mesh config: the defaults, limited to the given namespaces when there are some.
  const meshConfig = join(dir, 'mesh');
  const namespaces = o.namespaces && [...new Set([istioNamespace, ...o.namespaces])];
  writeFileSync(
    meshConfig,
    JSON.stringify(
      namespaces
        ? {
            discoverySelectors: [
              { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }] },
            ],
          }
        : {},
    ),
  );

  const { address } = o.network;
  const args = [
    'discovery',
    `--kubeconfig=${kubeconfig}`,
    `--meshConfig=${meshConfig}`,
    '--domain=cluster.local',
    `--grpcAddr=${address}:${istiodPorts.xds}`,
    `--secureGRPCAddr=${address}:${istiodPorts.secureXds}`,
    `--httpsAddr=${address}:${istiodPorts.webhooks}`,
    `--monitoringAddr=${address}:${istiodPorts.monitoring}`,
    `--httpAddr=${address}:${istiodPorts.debug}`,
    '--shutdownDuration=1s',
    '--log_as_json',
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    POD_NAME: 'istiod-local',
    POD_NAMESPACE: istioNamespace,
    SERVICE_ACCOUNT: serviceAccount,
    REVISION: 'default',
    CLUSTER_ID: 'Kubernetes',
    PILOT_CERT_PROVIDER: 'istiod',
    KUBECONFIG: kubeconfig,
    INJECTION_WEBHOOK_CONFIG_NAME: '',
    VALIDATION_WEBHOOK_CONFIG_NAME: '',
    PILOT_ENABLE_GATEWAY_API: 'false',
    PILOT_ENABLE_GATEWAY_API_STATUS: 'false',
    PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER: 'false',
    PILOT_ENABLE_GATEWAY_API_GATEWAYCLASS_CONTROLLER: 'false',
    PILOT_ENABLE_ANALYSIS: 'false',
  };
  const { child, logFile } = (o.start ?? ((n, p, a, e) => startChild(n, p, a, e, dir, o.network.namespace)))(
    'istiod',
    toolPath('pilot-discovery'),
    args,
    env,
  );
  const tail = () =>
    `last lines of istiod's log (${logFile}):\n${existsSync(logFile) ? readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-20).join('\n') : ''}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killNow = () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL');
  process.on('exit', killNow);
  const stop = async () => {
    process.off('exit', killNow);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if ((await Promise.race([exited.then(() => 'exited'), delay(5000).then(() => 'timeout')])) === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
  };
  const debugUrl = `http://${address}:${istiodPorts.debug}`;
  try {
    await waitFor(
      'istiod /ready',
      120_000,
      async () => {
        if (child.exitCode !== null) throw new Error(`istiod exited with code ${child.exitCode}`);
        return (await fetch(`${debugUrl}/ready`)).ok ? true : undefined;
      },
      tail,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  progress(
    `istiod ready in ${((Date.now() - started) / 1000).toFixed(1)}s: xDS at ${address}:${istiodPorts.xds}, debug ${debugUrl}`,
  );
  return { xdsAddress: `${address}:${istiodPorts.xds}`, debugUrl, logFile, pid: child.pid!, stop };
}
