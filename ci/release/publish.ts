// npm run chart:publish -- oci://HOST/PATH [--plain-http] [--force] [--package FILE] [--dir CHECKOUT]
// Packages the chart into dist/ (or takes --package FILE), logs in to the registry when
// HELM_REGISTRY_USERNAME and HELM_REGISTRY_PASSWORD are set (otherwise Helm's stored credentials
// apply), refuses to replace a version the registry already has unless --force, pushes, and prints
// the pushed reference with its digest.
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { ensureTools, toolPath } from '../tools/build.ts';
import { exec, execOk } from '../exec.ts';
import { runMain } from './exec.ts';
import { packageChart, repositoryRoot } from './package.ts';

export interface PublishOptions {
  /** `oci://HOST/PATH`: the chart is pushed as HOST/PATH/<chart name>:<version>. */
  registry: string;
  /** The chart root to package, when `archive` is not given. */
  root: string;
  /** A packaged chart to push as it is. */
  archive?: string;
  plainHttp?: boolean;
  force?: boolean;
  helm: string;
  /** Environment of the helm commands; also where HELM_REGISTRY_USERNAME/PASSWORD are read. */
  env?: NodeJS.ProcessEnv;
}

export interface Published {
  /** `oci://HOST/PATH/NAME` */
  chart: string;
  version: string;
  digest: string;
}

function parseRegistry(registry: string): { url: string; host: string } {
  const match = registry.match(/^oci:\/\/([^/\s]+)(\/[^\s]*)?$/);
  if (!match)
    throw new Error(
      `"${registry}" is not an OCI registry reference: give oci://HOST/PATH, e.g. oci://ghcr.io/ml-operator/charts`,
    );
  return { url: registry.replace(/\/+$/, ''), host: match[1] };
}

/** Whether the registry holds `chart` at `version`; throws when the registry cannot tell. */
async function exists(
  helm: string,
  chart: string,
  version: string,
  flags: string[],
  env?: NodeJS.ProcessEnv,
): Promise<boolean> {
  const result = await exec(helm, ['show', 'chart', chart, '--version', version, ...flags], { env });
  if (result.code === 0) return true;
  // Helm says `...: not found` for a missing repository or tag; anything else (refused connection,
  // authentication, TLS) must stop the publish rather than pass for "not there yet".
  if (/: not found\s*$/m.test(result.stderr)) return false;
  throw new Error(`cannot tell whether ${chart}:${version} exists:\n${result.stderr.trim()}`);
}

export async function publishChart(options: PublishOptions): Promise<Published> {
  const { root, plainHttp = false, force = false, helm } = options;
  const env = options.env ?? process.env;
  const { url, host } = parseRegistry(options.registry);
  const flags = plainHttp ? ['--plain-http'] : [];
  const archive = options.archive ?? (await packageChart({ root, outDir: join(root, 'dist'), helm, env }));
  const meta = parse((await execOk(helm, ['show', 'chart', archive], { env })).stdout) as {
    name: string;
    version: string;
  };
  const chart = `${url}/${meta.name}`;

  const { HELM_REGISTRY_USERNAME: username, HELM_REGISTRY_PASSWORD: password } = env;
  if (username && password) {
    await execOk(helm, ['registry', 'login', host, '--username', username, '--password-stdin', ...flags], {
      env,
      input: password,
    });
  }
  if (!force && (await exists(helm, chart, meta.version, flags, env))) {
    throw new Error(
      `${chart}:${meta.version} already exists. A published version must not change under the people who installed it: ` +
        `bump the version (npm run version:bump -- X.Y.Z), or pass --force to overwrite ${chart}:${meta.version}.`,
    );
  }
  const pushed = await execOk(helm, ['push', archive, url, ...flags], { env });
  const digest = `${pushed.stdout}\n${pushed.stderr}`.match(/^Digest:\s*(sha256:[0-9a-f]{64})/m)?.[1];
  if (!digest) throw new Error(`helm push did not report a digest:\n${pushed.stdout}${pushed.stderr}`);
  return { chart, version: meta.version, digest };
}

async function main(args: string[]): Promise<number> {
  const usage =
    'usage: npm run chart:publish -- oci://HOST/PATH [--plain-http] [--force] [--package FILE] [--dir CHECKOUT]';
  let root = repositoryRoot;
  let archive: string | undefined;
  let plainHttp = false;
  let force = false;
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--plain-http') plainHttp = true;
    else if (args[i] === '--force') force = true;
    else if (args[i] === '--package' && args[i + 1]) archive = resolve(args[++i]);
    else if (args[i] === '--dir' && args[i + 1]) root = resolve(args[++i]);
    else if (args[i].startsWith('--')) {
      process.stderr.write(`chart:publish: unknown option ${args[i]}\n${usage}\n`);
      return 2;
    } else positional.push(args[i]);
  }
  if (positional.length !== 1) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  await ensureTools();
  const published = await publishChart({
    registry: positional[0],
    root,
    archive,
    plainHttp,
    force,
    helm: toolPath('helm'),
  });
  process.stdout.write(
    `Published ${published.chart}:${published.version}\n` +
      `Digest: ${published.digest}\n` +
      `Install: helm install ml-operator ${published.chart} --version ${published.version}${plainHttp ? ' --plain-http' : ''}\n`,
  );
  return 0;
}

runMain(import.meta.url, 'chart:publish', main);
