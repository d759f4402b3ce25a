// `npm start -- --real`: the platform team's first hour (real-journey.ts) on the local cluster with
// its real node. Builds the images (podman's layer cache), starts the cluster and a registry in its
// network, pushes the images and the chart there, `helm install`s the chart from oci:// with the
// controller in a pod on the real node, applies two iris models (LogisticRegression and
// DecisionTree) at 80/20 behind one endpoint with Data Capture into MinIO in the cluster's network,
// sends predictions through the gateway and prints a few of them, the split observed, where the
// records are and one of them, and what Python's json reads from their files. The cluster keeps
// running until Ctrl-C.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { log } from '../log.ts';
import { toolPath } from '../tools/build.ts';
import { waitFor } from '../wait.ts';
import { startControlPlane } from './control-plane.ts';
import { readCapturesPython, startJourneyCapture, type CapturesRead } from './journey-capture.ts';
import { buildJourneyImages, onRealNode, prepareRealJourney } from './real-journey.ts';

const requests = 500;
const images = buildJourneyImages();
const cluster = await startControlPlane({ realNode: true, observability: false });
const journey = await prepareRealJourney(cluster, await images);
const capture = await startJourneyCapture(cluster, journey);
for (const s of ['SIGINT', 'SIGTERM'] as const)
  process.once(s, () => void Promise.allSettled([journey.stop(), capture.stop()]));

const installed = Date.now();
log(
  `demo: helm install ${journey.release.name} ${journey.chart.chart} --version ${journey.chart.version} --plain-http (controller ${journey.controllerRepository}:journey-1 in a pod on the real node)`,
);
await journey.helmRelease('journey-1');
await journey.applyModel('iris-a', journey.irisModel(journey.artifacts['iris-1.0.0']));
await journey.applyModel('iris-b', journey.irisModel(journey.artifacts['iris-2.0.0']));
const weights = { 'iris-a': 80, 'iris-b': 20 };
await journey.applyConfig('iris', {
  models: Object.entries(weights).map(([model, weight]) => ({
    model,
    weight,
    instances: 1,
    cpus: '100m',
    memory: '256Mi',
    size: '64Mi',
    ...onRealNode,
  })),
  // Every request and answer kept, as SageMaker's Data Capture keeps them.
  dataCapture: capture.dataCapture(100),
});
await journey.applyEndpoint('iris', 'iris');
let last = '';
await waitFor('the endpoint to be InService', 300_000, async () => {
  const e = await journey.endpoint('iris');
  const now = `${e?.status?.state ?? 'Pending'} ${e?.status?.ready ?? ''}`;
  if (now !== last) log(`demo: endpoint iris ${now}`);
  last = now;
  return e?.status?.state === 'InService' ? true : undefined;
});
await waitFor('a first prediction through the gateway', 120_000, async () =>
  (await journey.predictions('iris', { requests: 1, maxDurationMs: 10_000, concurrency: 1 }).done).failed === 0
    ? true
    : undefined,
);
const firstAfter = (Date.now() - installed) / 1000;

log(`demo: sending ${requests} predictions through the gateway`);
const run = journey.predictions('iris', { requests, maxDurationMs: 120_000, concurrency: 4 });
const r = await run.done;
const byModel = new Map<string, number>();
for (const s of run.samples)
  if (s.status === 200) byModel.set(s.backend?.model ?? '-', (byModel.get(s.backend?.model ?? '-') ?? 0) + 1);
log(`demo: waiting for the ${r.sent} predictions' records in ${capture.where('iris')}`);
const records = await capture.settled('iris', r.sent - r.failed);
const copies = join(cluster.dir, 'captures');
await capture.download('iris', copies);
const python = spawnSync('python3', ['-c', readCapturesPython, copies], { encoding: 'utf8' });
if (python.status !== 0)
  throw new Error(
    `python3 reading ${copies}: ${python.error ? `${python.error.message} (install Debian's python3)` : `exit ${python.status}: ${python.stderr}`}`,
  );
const read = JSON.parse(python.stdout) as CapturesRead;
const host = journey.host('iris');
const gateway = `${cluster.gateway.address}:${cluster.gateway.port}`;
const out = [
  '',
  `helm install to the first prediction: ${firstAfter.toFixed(1)}s`,
  'A few predictions (POST /predict {"instances": [[5.1, 3.5, 1.4, 0.2]]}):',
  ...run.samples
    .slice(0, 5)
    .map(
      (s) =>
        `  ${s.status} ${s.backend?.model ?? '-'} ${JSON.stringify(s.backend?.labels)} from ${s.backend?.pod ?? '-'}`,
    ),
  `${r.sent} predictions, ${r.failed} failed; configured iris-a (iris/1.0.0) 80%, iris-b (iris/2.0.0) 20%; observed: ${[...byModel].map(([m, n]) => `${m} ${((100 * n) / Math.max(1, r.sent - r.failed)).toFixed(1)}%`).join(', ')}`,
  `latency p50 ${r.latency.p50.toFixed(1)} ms, p99 ${r.latency.p99.toFixed(1)} ms`,
  '',
  `Data Capture: ${records} records in ${capture.where('iris')} (MinIO at ${capture.store.url}), copied to ${copies}.`,
  `Python's json read ${read.records} records from ${read.files} files: ${JSON.stringify(read.variants)} by variant. One record:`,
  ...JSON.stringify(read.first, null, 2)
    .split('\n')
    .map((line) => `  ${line}`),
  'Read them yourself:',
  `  python3 -c 'import json, pathlib; rs = [json.loads(l) for f in sorted(pathlib.Path("${copies}").rglob("*.jsonl")) for l in f.open()]; print(len(rs), "records; the last answer:", rs[-1]["captureData"]["endpointOutput"]["data"])'`,
  '',
  'The cluster keeps running. Predict yourself:',
  `  curl -s -H 'Host: ${host}' http://${gateway}/predict -d '{"instances": [[6.7, 3.0, 5.2, 2.3]]}'`,
  `  export KUBECONFIG=${cluster.kubeconfigPath}; alias kubectl=${toolPath('kubectl')}`,
  `  kubectl get pods -A -o wide --field-selector spec.nodeName=${cluster.realNode!.name}`,
  `  kubectl get mle -n ${journey.models}`,
  'Press Ctrl-C to stop the cluster.',
  '',
];
process.stdout.write(out.join('\n') + '\n');
await new Promise<never>(() => undefined);
