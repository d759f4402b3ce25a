// npm run chart:package [-- --out DIR] [--dir CHECKOUT]
// Builds the chart archive: refuses when the versions disagree or the generated docs are stale, then
// `helm dependency build` (from Chart.lock: it fails when the lock no longer matches Chart.yaml),
// `helm lint --strict`, and `helm package` of the umbrella with its subchart into dist/.
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTools, toolPath } from '../tools/build.ts';
import { docs } from './docs.ts';
import { execOk } from '../exec.ts';
import { runMain } from './exec.ts';
import { versionProblems } from './versions.ts';

export const repositoryRoot = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

export interface PackageOptions {
  /** The chart root (a checkout). */
  root: string;
  /** Where the archive goes. */
  outDir: string;
  helm: string;
  /** Environment of the helm commands (their cache and config homes). */
  env?: NodeJS.ProcessEnv;
}

/** Packages the chart and returns the archive's path. */
export async function packageChart({ root, outDir, helm, env }: PackageOptions): Promise<string> {
  const problems = versionProblems(root);
  if (problems.length > 0)
    throw new Error(`versions disagree (fix with npm run version:bump -- X.Y.Z):\n  ${problems.join('\n  ')}`);
  const stale = docs(root, { check: true });
  if (stale.length > 0) throw new Error(`generated docs are out of date in ${stale.join(', ')}: run npm run docs`);
  await execOk(helm, ['dependency', 'build', '.'], { cwd: root, env });
  await execOk(helm, ['lint', '--strict', '.'], { cwd: root, env });
  mkdirSync(outDir, { recursive: true });
  const { stdout } = await execOk(helm, ['package', '.', '--destination', resolve(outDir)], { cwd: root, env });
  const archive = stdout.match(/saved it to: (.+\.tgz)\s*$/m)?.[1];
  if (!archive) throw new Error(`helm package did not say where it saved the chart:\n${stdout}`);
  return archive;
}

async function main(args: string[]): Promise<number> {
  let root = repositoryRoot;
  let outDir: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--dir' && args[i + 1]) root = resolve(args[++i]);
    else if (args[i] === '--out' && args[i + 1]) outDir = resolve(args[++i]);
    else {
      process.stderr.write(
        `chart:package: unknown argument ${args[i]}\nusage: npm run chart:package [-- --out DIR] [--dir CHECKOUT]\n`,
      );
      return 2;
    }
  }
  await ensureTools();
  const archive = await packageChart({ root, outDir: outDir ?? join(root, 'dist'), helm: toolPath('helm') });
  process.stdout.write(`${archive}\n`);
  return 0;
}

runMain(import.meta.url, 'chart:package', main);
