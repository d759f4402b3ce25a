// The test command (`npm test`): lint and the format check first (ci/checks.ts: a finding fails in seconds,
// not after the tests), then builds any missing Go tool, with progress, so that the first run on a new
// machine never looks stuck inside a test, then runs vitest under this Node.js.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatCheck, lint } from './checks.ts';
import { type RunSummary, summaryLines } from './summary-reporter.ts';
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
const run = (argv: string[], summaryFile: string) =>
  new Promise<number>((resolve) => {
    current = spawn(process.execPath, [vitest, 'run', ...argv], {
      stdio: 'inherit',
      env: { ...process.env, ML_OPERATOR_TEST_SUMMARY: summaryFile },
    });
    current.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });

/** What a phase's reporter wrote (ci/summary-reporter.ts); none when vitest stopped before its end. */
function readSummary(file: string): RunSummary | undefined {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return JSON.parse(lines[lines.length - 1]) as RunSummary;
  } catch {
    return undefined;
  }
}

const dir = mkdtempSync(join(tmpdir(), 'ml-operator-test-'));
const report: string[] = [];
let failed = 0;
const all = phases(args);
for (const [i, argv] of all.entries()) {
  if (stopping) break;
  // Every phase runs, so that one run reports every failure; the exit code is the first failure's.
  const summaryFile = join(dir, `phase-${i + 1}.jsonl`);
  const code = await run(argv, summaryFile);
  if (code !== 0 && failed === 0) failed = code;
  const summary = readSummary(summaryFile);
  const name = `phase ${i + 1} of ${all.length} (vitest run ${argv.join(' ')})`;
  report.push(`${name}: exit ${code}`);
  if (summary) report.push(...summaryLines(summary).map((l) => `  ${l}`));
  else report.push('  no summary: vitest stopped before the end of its run (see its output above)');
  // A non-zero exit with no failed test: an error outside the tests, such as a global setup's teardown.
  if (code !== 0 && summary && summary.failures.length === 0)
    report.push('  no test failed: the error is outside the tests (a global setup or teardown), in the output above');
}
rmSync(dir, { recursive: true, force: true });
if (all.length > 1 || failed !== 0)
  process.stdout.write(`\nnpm test: ${failed === 0 ? 'passed' : 'FAILED'}\n${report.join('\n')}\n`);
process.exit(failed);
