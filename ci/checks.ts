// The checks `npm test` runs before any test, fastest first: ESLint over the code (`npm run lint`) and
// Prettier's format check. Each failure says what to run to fix it.
// Usage: node ci/node24.mjs ci/checks.ts [lint|format]...   (none: both)
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** What ESLint covers (eslint.config.js says how, and what it leaves out). */
export const linted = ['controller', 'ci', 'test', 'codegen', 'eslint.config.js'];

/** What the format check covers: the whole tree, less .prettierignore. */
export const formatChecked = ['.'];

/** Runs one check; on failure prints what to run and returns false. */
function check(title: string, command: string[], fix: string): boolean {
  const started = performance.now();
  const r = spawnSync(process.execPath, command, { cwd: root, stdio: 'inherit' });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (r.status === 0) {
    process.stdout.write(`checks: ${title} passed in ${seconds} s\n`);
    return true;
  }
  process.stderr.write(`checks: ${title} FAILED after ${seconds} s (exit ${r.status ?? r.signal}). To fix: ${fix}\n`);
  return false;
}

export function lint(): boolean {
  // The cache keeps a file's findings until it or the config changes: a rerun checks only what changed.
  // A type-aware finding caused by a change in another file can hide behind it locally; CI starts without one.
  const cache = ['--cache', '--cache-strategy', 'content', '--cache-location', 'node_modules/.cache/eslint/'];
  return check(
    'lint (ESLint)',
    ['node_modules/eslint/bin/eslint.js', ...cache, ...linted],
    'fix the findings listed above (`npm run lint -- --fix` fixes some by itself)',
  );
}

export function formatCheck(): boolean {
  return check(
    'format (Prettier)',
    ['node_modules/prettier/bin/prettier.cjs', '--check', ...formatChecked],
    `npx prettier --write ${formatChecked.join(' ')}`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wanted = process.argv.slice(2);
  const run = (name: string) => wanted.length === 0 || wanted.includes(name);
  const ok = (!run('lint') || lint()) && (!run('format') || formatCheck());
  process.exit(ok ? 0 : 1);
}
