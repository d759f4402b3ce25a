// `npm start`: the product on the embedded local cluster. Starts the control plane, installs the
// chart from the working tree with helm, runs the controller under the chart's ServiceAccount,
// applies examples/, waits until every endpoint is InService and prints what serves where.
// Ctrl-C stops everything.
import { openSync, readdirSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MachineLearningEndpoint } from '../../controller/src/api/generated.ts';
import { KubeClient } from '../../controller/src/kube/client.ts';
import { resources, type KubeObject } from '../../controller/src/kube/resources.ts';
import { log } from '../log.ts';
import { toolPath } from '../tools/build.ts';
import { waitFor } from '../wait.ts';
import { startControlPlane, kubectl } from './control-plane.ts';
import { chartConfig, installChart, serviceAccountKubeconfig, startControllerProcess } from './operator.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const namespace = 'machine-learning';

const cluster = await startControlPlane();
const admin = cluster.kubeConfig();

log('demo: installing the chart from the working tree (helm upgrade --install ml-operator .)');
await installChart(cluster.kubeconfigPath);

log('demo: starting the controller as the chart\'s ServiceAccount');
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

const exampleDirs = readdirSync(join(root, 'examples')).map((d) => join(root, 'examples', d));
log(`demo: applying ${exampleDirs.map((d) => d.slice(root.length + 1)).join(', ')} to namespace ${namespace}`);
await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '-n', namespace, ...exampleDirs.flatMap((d) => ['-f', d])]);

const client = new KubeClient(admin, { fieldManager: 'demo' });
type Endpoint = MachineLearningEndpoint & KubeObject;
let lastReport = '';
const endpoints = await waitFor('every example endpoint to be InService', 180_000, async () => {
  const { items } = await client.list<Endpoint>(resources.endpoint, namespace);
  const report = items.map((e) => `${e.metadata.name} ${e.status?.state ?? 'Pending'} ${e.status?.ready ?? ''}`).join(', ');
  if (report !== lastReport) log(`demo: ${report}`);
  lastReport = report;
  return items.length > 0 && items.every((e) => e.status?.state === 'InService' && e.status.observedGeneration === e.metadata.generation) ? items : undefined;
});

const table = (rows: string[][]) => {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => '  ' + r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
};
const out: string[] = [''];
for (const e of endpoints) {
  const s = e.status!;
  out.push(`endpoint ${namespace}/${e.metadata.name}: ${s.state}, host ${s.host}, serving config version ${s.endpointConfigVersion}, ${s.ready} replicas ready`);
  out.push(table([['VARIANT', 'MODEL VERSION', 'WEIGHT', 'READY', 'SERVICE'], ...s.traffic!.map((t) => [t.variant, t.modelVersion, `${t.weight}%`, `${t.readyReplicas}/${t.replicas}`, t.service])]));
  out.push('');
}
out.push(
  'The cluster keeps running. Try:',
  `  export KUBECONFIG=${cluster.kubeconfigPath}`,
  `  alias kubectl=${toolPath('kubectl')}`,
  `  kubectl get ml -n ${namespace}`,
  `  kubectl get virtualservice,gateway,deployment,service -n ${namespace}`,
  `  kubectl patch mlec titanic-ab -n ${namespace} --type=json -p '[{"op":"replace","path":"/spec/models/0/weight","value":50},{"op":"replace","path":"/spec/models/1/weight","value":50}]'`,
  `Controller logs: ${logPath}`,
  'Press Ctrl-C to stop the controller and the cluster.',
  '',
);
process.stdout.write(out.join('\n') + '\n');
await new Promise<void>((resolve) => controller.child.once('exit', () => resolve()));
// The controller ended (Ctrl-C or a crash): the control plane's own signal handler stops the rest.
if (!process.exitCode && controller.child.exitCode) log(`demo: the controller exited with ${controller.child.exitCode}; see ${logPath}`);
