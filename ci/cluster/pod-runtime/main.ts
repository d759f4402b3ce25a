// The local cluster's pod runtime and artifact server, one process inside the cluster's network
// namespace (started by control-plane.ts). JSON logs on stdout.
//   node main.ts --kubeconfig=PATH --data-dir=DIR --artifacts-dir=DIR --artifacts-address=IP
//                --cert=PEM --key=PEM --ca=PEM --node-selector=LABEL=VALUE --metrics-address=IP:PORT
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadClusterAccess } from '../../../controller/src/kube/access.ts';
import { KubeClient } from '../../../controller/src/kube/client.ts';
import { createLogger } from '../../../controller/src/log.ts';
import { startArtifactServer } from './artifact-server.ts';
import { PodRuntime } from './runtime.ts';

const root = dirname(dirname(dirname(dirname(fileURLToPath(import.meta.url)))));
const flags = Object.fromEntries(
  process.argv.slice(2).map((a) => a.replace(/^--/, '').split(/=(.*)/s).slice(0, 2) as [string, string]),
);
for (const required of [
  'kubeconfig',
  'data-dir',
  'artifacts-dir',
  'artifacts-address',
  'cert',
  'key',
  'ca',
  'node-selector',
  'metrics-address',
]) {
  if (!flags[required]) {
    process.stderr.write(`pod runtime: --${required} is required\n`);
    process.exit(2);
  }
}

const logger = createLogger('info').child({ component: 'pod-runtime' });
const access = await loadClusterAccess({ KUBECONFIG: flags.kubeconfig });
const client = new KubeClient(access, {
  fieldManager: 'ml-operator-local-kubelet',
  userAgent: 'ml-operator-local-kubelet',
});
const artifacts = await startArtifactServer({
  dir: flags['artifacts-dir'],
  address: flags['artifacts-address'],
  httpPort: 80,
  httpsPort: 443,
  certFile: flags.cert,
  keyFile: flags.key,
});
const runtime = new PodRuntime({
  client,
  logger,
  nodeSelector: flags['node-selector'],
  dataDir: flags['data-dir'],
  node: process.execPath,
  fetcherScript: join(root, 'controller', 'src', 'fetcher', 'main.ts'),
  agentScript: join(root, 'controller', 'src', 'agent', 'main.ts'),
  // No cloud metadata servers here: the SDKs' default credential chains must not look for one.
  fetcherEnv: { NODE_EXTRA_CA_CERTS: flags.ca, AWS_EC2_METADATA_DISABLED: 'true', METADATA_SERVER_DETECTION: 'none' },
});
await runtime.start();
// The pods' request counts, for Prometheus and tests (what each pod's proxy would report).
const [metricsHost, metricsPort] = flags['metrics-address'].split(/:(?=\d+$)/);
const metrics = createServer((req, res) => {
  if (req.url === '/metrics')
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(runtime.metrics());
  else res.writeHead(404).end();
});
await new Promise<void>((resolve) => metrics.listen(Number(metricsPort), metricsHost, resolve));
logger.info({ artifacts: flags['artifacts-address'], metrics: flags['metrics-address'] }, 'pod runtime ready');
/** The machine's CPU pressure (Linux PSI: the share of time runnable tasks waited for a CPU), when known. */
function cpuPressure(): string | undefined {
  try {
    return readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0];
  } catch {
    return undefined;
  }
}
// Every pod's model server answers on this one event loop: a stall of it is a stall of every pod,
// logged so that a slow request in a test can be told apart from a slow gateway.
let tick = performance.now();
setInterval(() => {
  const late = performance.now() - tick - 100;
  tick = performance.now();
  if (late >= 250)
    logger.warn(
      { blockedMs: Math.round(late), cpuPressure: cpuPressure() },
      'event loop stalled; every pod answered late',
    );
}, 100).unref();

const shutdown = () => {
  runtime.stop();
  artifacts.close();
  metrics.close();
  process.exit(0);
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
