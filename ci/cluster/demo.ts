// `npm start`: the product on the embedded local cluster. Starts the cluster (control plane, pod
// runtime, Traefik as the Gateway API data plane), installs the chart from the working tree with
// helm (routing with the Gateway API provider on the cluster's shared Gateway), runs the controller
// under the chart's ServiceAccount, applies examples/titanic and examples/ab-test, waits until every
// endpoint is InService, sends real requests through the gateway to each one and prints the split it
// observed beside the configured weights. Ctrl-C stops everything.
// `npm start -- --real`: the same in real containers on the cluster's real node (real-demo.ts): the
// chart and images from a registry in the cluster's network, the controller in a pod, real
// scikit-learn predictions.
import { existsSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { log } from '../log.ts';
import { toolPath } from '../tools/build.ts';
import { startLoad } from '../traffic/load.ts';
import { waitFor } from '../wait.ts';
import { startControlPlane, kubectl } from './control-plane.ts';
import { chartConfig, installChart, serviceAccountKubeconfig, startControllerProcess } from './operator.ts';

if (process.argv.includes('--real')) {
  await import('./real-demo.ts');
  await new Promise<never>(() => undefined);
}

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const namespace = 'machine-learning';
const requestsPerEndpoint = 1000;

const cluster = await startControlPlane();
const admin = cluster.kubeConfig();
const { gateway, network } = cluster;
const gatewayAddress = `${gateway.address}${gateway.port === 80 ? '' : `:${gateway.port}`}`;
writeFileSync(join(cluster.dir, 'gateway.address'), gatewayAddress);

log(
  'demo: installing the chart from the working tree (helm upgrade --install ml-operator .), routing with the Gateway API provider',
);
await installChart(cluster.kubeconfigPath, [
  'controller.config.routing.provider=gatewayAPI',
  `controller.config.routing.gatewayAPI.sharedGateway.name=${gateway.shared.name}`,
  `controller.config.routing.gatewayAPI.sharedGateway.namespace=${gateway.shared.namespace}`,
]);

log("demo: starting the controller as the chart's ServiceAccount");
const logPath = join(cluster.dir, 'controller.log');
const controller = await startControllerProcess({
  kubeconfig: await serviceAccountKubeconfig(admin),
  config: await chartConfig(admin),
});
// Keep the controller's JSON logs in a file; the terminal shows progress and the result.
const logFile = openSync(logPath, 'a');
writeSync(logFile, controller.logs());
controller.child.stdout!.on('data', (c: Buffer) => writeSync(logFile, c));
controller.child.stderr!.on('data', (c: Buffer) => writeSync(logFile, c));
process.once('SIGINT', () => void controller.stop());
process.once('SIGTERM', () => void controller.stop());

// The examples this cluster serves: the titanic model and the A/B test. The others run real model
// servers (MLServer, Triton, TensorFlow Serving, TorchServe, vLLM) for a real cluster: vLLM's variant
// waits for a GPU node, which the fake nodes are not, so its endpoint would never be InService here.
const demoExamples = ['titanic', 'ab-test'];
const exampleDirs = demoExamples.map((d) => join(root, 'examples', d));
for (const dir of exampleDirs) if (!existsSync(dir)) throw new Error(`demo: ${dir} is missing`);
log(`demo: applying ${exampleDirs.map((d) => d.slice(root.length + 1)).join(', ')} to namespace ${namespace}`);
await kubectl(cluster.kubeconfigPath, [
  'apply',
  '--server-side',
  '-n',
  namespace,
  ...exampleDirs.flatMap((d) => ['-f', d]),
]);

const client = new KubeClient(admin, { fieldManager: 'demo' });
type Endpoint = MachineLearningEndpoint & KubeObject;
let lastReport = '';
const endpoints = await waitFor('every example endpoint to be InService', 180_000, async () => {
  const { items } = await client.list<Endpoint>(resources.endpoint, namespace);
  const report = items
    .map((e) => `${e.metadata.name} ${e.status?.state ?? 'Pending'} ${e.status?.ready ?? ''}`)
    .join(', ');
  if (report !== lastReport) log(`demo: ${report}`);
  lastReport = report;
  return items.length > 0 &&
    items.every((e) => e.status?.state === 'InService' && e.status.observedGeneration === e.metadata.generation)
    ? items
    : undefined;
});

const table = (rows: string[][]) => {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map(
      (r) =>
        '  ' +
        r
          .map((c, i) => c.padEnd(widths[i]))
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
};
const out: string[] = [''];
for (const e of endpoints) {
  const s = e.status!;
  // The gateway reports a route accepted when it builds its configuration, and serves it a moment later.
  await waitFor(`the gateway to route ${s.host}`, 30_000, async () => {
    const probe = startLoad({
      url: `http://${gatewayAddress}/predict`,
      host: s.host!,
      requests: 1,
      concurrency: 1,
      maxDurationMs: 5000,
    });
    await probe.done;
    return probe.samples[0].status === 200 ? true : undefined;
  });
  log(`demo: sending ${requestsPerEndpoint} requests to ${s.host} through the gateway at ${gatewayAddress}`);
  const run = startLoad({
    url: `http://${gatewayAddress}/predict`,
    host: s.host!,
    requests: requestsPerEndpoint,
    concurrency: 16,
    maxDurationMs: 60_000,
  });
  const r = await run.done;
  const byModel = run.samples.filter((x) => x.status === 200 && x.backend?.instance);
  const answered = byModel.length;
  const others = Object.entries(r.byStatus)
    .filter(([status]) => status !== '200')
    .map(([status, n]) => `${n} with status ${status === '0' ? '(no answer)' : status}`);
  out.push(
    `endpoint ${namespace}/${e.metadata.name}: ${s.state}, host ${s.host}, serving config version ${s.endpointConfigVersion}, ${s.ready} replicas ready`,
  );
  out.push(
    table([
      ['VARIANT', 'MODEL VERSION', 'WEIGHT', 'OBSERVED', 'READY', 'SERVICE'],
      ...s.traffic!.map((t) => [
        t.variant,
        t.modelVersion,
        `${t.weight}%`,
        `${((100 * (r.byInstance[t.service] ?? 0)) / Math.max(1, answered)).toFixed(1)}%`,
        `${t.readyReplicas}/${t.replicas}`,
        t.service,
      ]),
    ]),
  );
  out.push(
    `  ${r.sent} requests: ${answered} answered by a model${others.length ? `, ${others.join(', ')}` : ''}; latency p50 ${r.latency.p50.toFixed(1)} ms, p99 ${r.latency.p99.toFixed(1)} ms`,
  );
  out.push('');
}
const example = endpoints.find((e) => e.metadata.name === 'titanic-ab') ?? endpoints[0];
out.push(
  'The cluster keeps running. Its network namespace is ' +
    network.namespace +
    '; the API server and the gateway listen at ' +
    gateway.address +
    '.',
  'Send a request of your own (from this shell, or entering the namespace):',
  `  curl -s -H 'Host: ${example.status!.host}' http://${gatewayAddress}/predict -d '{"passenger": {"age": 29, "class": 1}}'`,
  `  ip netns exec ${network.namespace} curl -s -H 'Host: ${example.status!.host}' http://${gatewayAddress}/predict`,
  'Use kubectl:',
  `  export KUBECONFIG=${cluster.kubeconfigPath}`,
  `  alias kubectl=${toolPath('kubectl')}`,
  `  kubectl get ml -n ${namespace}`,
  `  kubectl get httproute,deployment,service,pod -n ${namespace} -o wide`,
  'Watch a rollout while it happens: in one shell, a steady load that prints who answers each second,',
  `  npm run traffic -- --host=${example.status!.host}`,
  'and in another, change a weight (in place) or a model image (a new version, switched blue/green):',
  `  kubectl patch mlec titanic-ab -n ${namespace} --type=json -p '[{"op":"replace","path":"/spec/models/0/weight","value":50},{"op":"replace","path":"/spec/models/1/weight","value":50}]'`,
  `  kubectl patch mlm titanic-b -n ${namespace} --type=merge -p '{"spec":{"image":"ghcr.io/acme/titanic-server:1.2.0"}}'`,
  `  kubectl get mle -n ${namespace} -w`,
  `Controller logs: ${logPath}`,
  'Press Ctrl-C to stop the controller and the cluster.',
  '',
);
process.stdout.write(out.join('\n') + '\n');
await new Promise<void>((resolve) => controller.child.once('exit', () => resolve()));
// The controller ended (Ctrl-C or a crash): the control plane's own signal handler stops the rest.
if (!process.exitCode && controller.child.exitCode)
  log(`demo: the controller exited with ${controller.child.exitCode}; see ${logPath}`);
