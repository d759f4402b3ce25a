// npm run version:bump -- X.Y.Z [--dir CHECKOUT]
// Sets the release version everywhere it lives (see versions.ts), regenerates Chart.lock with
// `helm dependency update` (its digest covers the pinned subchart version) and the generated Chart.yaml
// annotations, and turns CHANGELOG.md's Unreleased section into the release's. The helm-unittest
// suites pin their own chart version (0.1.0) so that snapshots never change with a release: they are
// left alone.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument, type Document } from 'yaml';
import { ensureTools, toolPath } from '../tools/build.ts';
import { releaseUnreleased } from './changelog.ts';
import { docs } from './docs.ts';
import { execOk } from '../exec.ts';
import { runMain } from './exec.ts';
import { invalidVersion, subchartDir, versionProblems } from './versions.ts';

/** package.json and package-lock.json: the fields that hold the version. */
interface PackageFile {
  version?: string;
  packages?: Record<string, { version?: string } | undefined>;
}

function editJson(path: string, edit: (json: PackageFile) => void): void {
  const json = JSON.parse(readFileSync(path, 'utf8')) as PackageFile;
  edit(json);
  writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`);
}

/** Sets scalars in place so that comments and quoting survive. */
function editYaml(path: string, edit: (doc: Document) => void): void {
  const doc = parseDocument(readFileSync(path, 'utf8'));
  if (doc.errors.length > 0) throw doc.errors[0];
  edit(doc);
  writeFileSync(path, doc.toString({ lineWidth: 0 }));
}

function setScalar(doc: Document, path: (string | number)[], value: string): void {
  const node = doc.getIn(path, true) as { value?: unknown } | undefined;
  if (!node || !('value' in node)) throw new Error(`${path.join('.')} is missing`);
  node.value = value;
}

export interface BumpOptions {
  /** The checkout to change (the chart root). */
  root: string;
  version: string;
  /** helm binary that regenerates Chart.lock. */
  helm: string;
  /** Environment of the helm command (its cache and config homes). */
  env?: NodeJS.ProcessEnv;
  /** Date of the release in CHANGELOG.md (YYYY-MM-DD). */
  date?: string;
}

export async function bumpVersion({
  root,
  version,
  helm,
  env,
  date = new Date().toISOString().slice(0, 10),
}: BumpOptions): Promise<void> {
  const invalid = invalidVersion(version);
  if (invalid) throw new Error(invalid);
  editJson(join(root, 'package.json'), (pkg) => (pkg.version = version));
  editJson(join(root, 'package-lock.json'), (lock) => {
    lock.version = version;
    const top = lock.packages?.[''];
    if (top) top.version = version;
  });
  editYaml(join(root, subchartDir, 'Chart.yaml'), (doc) => {
    setScalar(doc, ['version'], version);
    setScalar(doc, ['appVersion'], version);
  });
  editYaml(join(root, 'Chart.yaml'), (doc) => {
    setScalar(doc, ['version'], version);
    setScalar(doc, ['appVersion'], version);
    const dependencies = (doc.toJS() as { dependencies?: { name: string }[] }).dependencies ?? [];
    const index = dependencies.findIndex((d) => d.name === 'controller');
    if (index < 0) throw new Error('Chart.yaml has no dependency named controller');
    setScalar(doc, ['dependencies', index, 'version'], version);
  });
  const changelog = join(root, 'CHANGELOG.md');
  writeFileSync(changelog, releaseUnreleased(readFileSync(changelog, 'utf8'), version, date));
  // `dependency build` refuses a Chart.lock that no longer matches Chart.yaml; `update` re-resolves
  // the file:// subchart (no repository is contacted) and writes the lock with its new digest.
  await execOk(helm, ['dependency', 'update', '--skip-refresh', '.'], { cwd: root, env });
  docs(root, { check: false });
  const problems = versionProblems(root);
  if (problems.length > 0) throw new Error(`after the bump, versions still disagree:\n  ${problems.join('\n  ')}`);
}

async function main(args: string[]): Promise<number> {
  const usage = 'usage: npm run version:bump -- X.Y.Z [--dir CHECKOUT]';
  let root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--dir' && args[i + 1]) root = args[++i];
    else if (args[i].startsWith('--')) {
      process.stderr.write(`version:bump: unknown option ${args[i]}\n${usage}\n`);
      return 2;
    } else positional.push(args[i]);
  }
  if (positional.length !== 1) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  const [version] = positional;
  const invalid = invalidVersion(version);
  if (invalid) {
    process.stderr.write(`version:bump: ${invalid}\n`);
    return 2;
  }
  await ensureTools();
  await bumpVersion({ root, version, helm: toolPath('helm') });
  process.stdout.write(
    `version:bump: ${version} set in package.json, package-lock.json, Chart.yaml, charts/controller/Chart.yaml, Chart.lock, ` +
      `the generated Chart.yaml annotations and CHANGELOG.md; review the changelog entry, then commit\n`,
  );
  return 0;
}

runMain(import.meta.url, 'version:bump', main);
