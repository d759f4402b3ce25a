// The test command (`npm test`): lint and the format check first (ci/checks.ts: a finding fails in seconds,
// not after the tests), then builds any missing Go tool, with progress, so that the first run on a new
// machine never looks stuck inside a test, then runs vitest under this Node.js.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { formatCheck, lint } from './checks.ts';
import { ensureTools } from './tools/build.ts';

const args = process.argv.slice(2);
// A run that names test files (one file while working on it) skips the checks; a run of whole projects does not.
const namesFiles = args.some((arg, i) => !arg.startsWith('-') && !args[i - 1]?.startsWith('--'));
if (!namesFiles && !(lint() && formatCheck())) process.exit(1);

// The real node's tools too: the integration project's real-node test starts a cluster with one; and
// istiod, which the Istio xDS test runs.
await ensureTools({ realNode: true, istio: true });
const vitest = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));
const child = spawn(process.execPath, [vitest, 'run', ...args], { stdio: 'inherit' });
process.on('SIGINT', () => {});
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
