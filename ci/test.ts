// The test command (`npm test`): builds any missing Go tool first, with progress, so that the first
// run on a new machine never looks stuck inside a test, then runs vitest under this Node.js.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ensureTools } from './tools/build.ts';

// The real node's tools too: the integration project's real-node test starts a cluster with one; and
// istiod, which the Istio xDS test runs.
await ensureTools({ realNode: true, istio: true });
const vitest = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));
const child = spawn(process.execPath, [vitest, 'run', ...process.argv.slice(2)], { stdio: 'inherit' });
process.on('SIGINT', () => {});
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
