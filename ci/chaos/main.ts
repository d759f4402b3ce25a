// `npm run chaos -- --minutes=N [--endpoints=20] [--seed=S]`: the chaos soak for as long as asked, on
// a local cluster of its own: 20 endpoints at 20 requests a second each, 40 spec changes and 20 controller kills a
// minute (the test's pace), then the checks. Prints the counts; exits 1 when a check fails.
import { randomInt } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { startControlPlane } from '../cluster/control-plane.ts';
import { installChart } from '../cluster/operator.ts';
import { log } from '../log.ts';
import { describeSoak, runSoak, soakProblems } from './soak.ts';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
for (const key of Object.keys(args))
  if (!['minutes', 'endpoints', 'seed'].includes(key))
    throw new Error(`unknown flag --${key} (use --minutes=N, --endpoints=N, --seed=S)`);
const minutes = Number(args.minutes ?? 5);
const endpoints = Number(args.endpoints ?? 20);
if (!(minutes > 0) || !(endpoints > 0)) throw new Error('--minutes and --endpoints must be positive numbers');
const seed = args.seed ? Number(args.seed) : randomInt(2 ** 31);

const cluster = await startControlPlane({ observability: false, nodes: 2 });
let problems: string[];
try {
  // The CRDs, as a cluster's first release installs them (the soak's own release leaves them out).
  await installChart(cluster.kubeconfigPath);
  const kc = cluster.kubeConfig();
  const namespace = 'chaos';
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({
    body: { metadata: { name: namespace, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } },
  });
  const report = await runSoak(cluster, namespace, {
    endpoints,
    changes: Math.round(40 * minutes),
    kills: Math.round(20 * minutes),
    churnMs: minutes * 60_000,
    rate: 20,
    seed,
  });
  process.stdout.write(`\n${describeSoak(report)}\n`);
  problems = soakProblems(report);
  log(problems.length ? `chaos: FAILED:\n  ${problems.join('\n  ')}\nreplay with --seed=${seed}` : 'chaos: passed');
} finally {
  await cluster.stop();
}
process.exit(problems.length ? 1 : 0);
