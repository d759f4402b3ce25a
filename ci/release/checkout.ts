// Throwaway copies of the chart's part of the repository, for tests and scripts that bump, package or publish
// without touching the checkout; and the exact list of files a chart package may hold.
import { cpSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { extractAt, pathsAt } from './published.ts';

export const repositoryRoot = fileURLToPath(new URL('../..', import.meta.url));

/** What the release scripts read: the chart, and the sources of its versions and generated docs. */
const checkoutEntries = [
  'Chart.yaml',
  'Chart.lock',
  'values.yaml',
  'values.schema.json',
  '.helmignore',
  'README.md',
  'CHANGELOG.md',
  'package.json',
  'package-lock.json',
  'templates',
  'tests',
  'charts/controller',
  'schemas',
  'examples',
];

/** Copies the chart's part of the repository into `dest` (which must not exist yet). */
export function copyCheckout(dest: string): string {
  for (const entry of checkoutEntries) cpSync(join(repositoryRoot, entry), join(dest, entry), { recursive: true });
  // A subchart archive left by `helm dependency build` in the checkout is not part of the chart.
  for (const file of readdirSync(join(dest, 'charts')).filter((f) => f.endsWith('.tgz')))
    rmSync(join(dest, 'charts', file));
  return dest;
}

/** The same part of the repository as it was at `commit` (a published release), from git. */
export function checkoutAt(commit: string, dest: string): string {
  extractAt(commit, pathsAt(commit, checkoutEntries), dest);
  return dest;
}

function filesUnder(root: string, dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

/**
 * Every path the package of the chart at `root` must hold, and nothing else: the umbrella's
 * metadata, values, schema, README (and LICENSE when there is one) and templates, and the same for
 * the controller subchart, under the chart's name.
 */
export function expectedPackageFiles(root: string): string[] {
  const { name } = parse(readFileSync(join(root, 'Chart.yaml'), 'utf8')) as { name: string };
  const chartFiles = (dir: string) => [
    ...['Chart.yaml', 'values.yaml', 'values.schema.json', 'README.md', 'LICENSE']
      .map((f) => join(dir, f))
      .filter((f) => existsSync(join(root, f))),
    ...filesUnder(root, join(dir, 'templates')),
    ...(existsSync(join(root, dir, 'dashboards')) ? filesUnder(root, join(dir, 'dashboards')) : []),
  ];
  return [...chartFiles('.'), 'Chart.lock', ...chartFiles(join('charts', 'controller'))]
    .map((f) => join(name, f))
    .sort();
}

/** Environment that keeps Helm's config, cache and data inside `scratch`, out of the user's home. */
export function isolatedHelmEnv(scratch: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HELM_CACHE_HOME: join(scratch, 'helm', 'cache'),
    HELM_CONFIG_HOME: join(scratch, 'helm', 'config'),
    HELM_DATA_HOME: join(scratch, 'helm', 'data'),
  };
}
