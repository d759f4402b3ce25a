// The test command (`npm test`): lint and the format check first (ci/checks.ts: a finding fails in seconds,
// not after the tests), then builds any missing Go tool, with progress, so that the first run on a new
// machine never looks stuck inside a test, then runs vitest under this Node.js.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { formatCheck, lint } from './checks.ts';
import { namesFiles, phases, runsPart } from './test-args.ts';
import { ensureTools } from './tools/build.ts';

const args = process.argv.slice(2);
// A run that names test files (one file while working on it) skips the checks; a run of whole projects does not.
if (!namesFiles(args) && !(lint() && formatCheck())) process.exit(1);
// Part of the tests leave some granted verbs unused: the integration suite's RBAC audit then checks
// only that every verb used was granted (test/integration/global-setup.ts).
if (runsPart(args)) process.env.ML_OPERATOR_RBAC_AUDIT = 'missing';

// The real node's tools too: the integration project's real-node test starts a cluster with one; and
// istiod, which the Istio xDS test runs.
await ensureTools({ realNode: true, istio: true });
const vitest = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));

let current: ReturnType<typeof spawn> | undefined;
let stopping = false;
process.on('SIGINT', () => {
  stopping = true;
});
process.on('SIGTERM', () => {
  stopping = true;
  current?.kill('SIGTERM');
});
const run = (argv: string[]) =>
  new Promise<number>((resolve) => {
    current = spawn(process.execPath, [vitest, 'run', ...argv], { stdio: 'inherit' });
    current.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
let failed = 0;
for (const argv of phases(args)) {
  if (stopping) break;
  // Every phase runs, so that one run reports every failure; the exit code is the first failure's.
  const code = await run(argv);
  if (code !== 0 && failed === 0) failed = code;
}
process.exit(failed);
