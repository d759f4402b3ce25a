// `npm run image`: builds the controller image from controller/Dockerfile with podman, on the Node.js
// 24 base image made here (ci/image/base.ts), prints its size layer by layer (uncompressed, and
// compressed as a registry stores it), pushes it to a local OCI registry (ci/cluster/registry.ts),
// and runs it as the chart does, read-only as user 65532: the controller's usage error and the
// artifact fetcher unpacking a .tar.gz and a .zip into a volume.
//
//   npm run image [-- --no-cache] [--tag=NAME]
//
// The Dockerfile is the one a release builds with docker (its NODE_IMAGE build argument names the
// base). podman builds with chroot isolation and the host's network; its `npm ci` steps reach the
// registry the host's npm uses, trusting the host's certificate authorities, through a build-time
// mount of an npmrc and the CA bundle over the base image's empty /usr/local/etc (npm's global
// config directory): nothing of it stays in a layer.
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheRoot } from '../cache.mjs';
import type { ImageArchive } from '../cluster/images.ts';
import { extractAt, pathsAt } from '../release/published.ts';
import { startRegistry } from '../cluster/registry.ts';
import { log, withProgress } from '../log.ts';
import { baseImage, mmdebstrapPackage } from './base.ts';
import { nodeBaseImageBuilt } from './base-builds.ts';
import { containersDir, ensurePodman, podman, podmanOk, podmanPackages } from './podman.ts';
import { ensureDebianPackages } from '../debian.ts';
import { execOkSync, execSync } from '../exec.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
export const defaultTag = 'localhost/ml-operator/controller:dev';

/** The user the chart runs the controller and the fetcher as. */
export const imageUser = '65532:65532';

/** Every Debian package `npm run image` needs (podman, runc, mmdebstrap). */
export const imagePackages = [...podmanPackages, mmdebstrapPackage];

/** A directory to mount over /usr/local/etc during the build: npm's global config, naming the host's registry and CAs. */
function npmBuildConfig(): string {
  const dir = join(containersDir(), 'npm-build-config');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const npmConfig = (key: string) => execSync('npm', ['config', 'get', key]).stdout.trim();
  const lines = ["# The build-time npm config of ci/image/build.ts: the host's registry and certificate authorities."];
  const registry = npmConfig('registry');
  if (/^https?:\/\//.test(registry)) lines.push(`registry=${registry}`);
  const caFile = [npmConfig('cafile'), process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt'].find(
    (f) => f && f !== 'null' && f !== 'undefined' && existsSync(f),
  );
  if (caFile) {
    copyFileSync(caFile, join(dir, 'ca.crt'));
    lines.push('cafile=/usr/local/etc/ca.crt');
  }
  writeFileSync(join(dir, 'npmrc'), `${lines.join('\n')}\n`);
  return dir;
}

export interface BuildResult {
  image: string;
  id: string;
  base: string;
  seconds: number;
}

export interface BuildOptions {
  dockerfile: string;
  context: string;
  /** The image's name (none: an untagged image, as for a build that only outputs files). */
  tag?: string;
  buildArgs?: Record<string, string>;
  /** A directory to write the built stage's files into (`--output type=local`), beside the image. */
  output?: string;
  /** `podman build --volume` values: mounted into every RUN step, never into a layer. */
  volumes?: string[];
  /** The stage to build (default: the last). */
  target?: string;
  noCache?: boolean;
}

/** Builds a Dockerfile with podman (chroot isolation, the host's network); prints each step as it starts and how long it took. */
export async function buildImage({
  dockerfile,
  context,
  tag,
  buildArgs = {},
  output,
  volumes = [],
  target,
  noCache = false,
}: BuildOptions): Promise<void> {
  const args = [
    'build',
    '--isolation=chroot',
    // The build's RUN steps use the host's network (the npm registry, Debian's packages): no
    // network namespace or CNI plugin is needed.
    '--network=host',
    ...volumes.map((v) => `--volume=${v}`),
    ...Object.entries(buildArgs).map(([k, v]) => `--build-arg=${k}=${v}`),
    ...(target ? [`--target=${target}`] : []),
    ...(noCache ? ['--no-cache'] : []),
    ...(output ? [`--output=type=local,dest=${output}`] : []),
    '--file',
    dockerfile,
    ...(tag ? ['--tag', tag] : []),
    context,
  ];
  let step = '';
  let stepStarted = Date.now();
  const endStep = () => {
    if (step) log(`image:   ${step} (${((Date.now() - stepStarted) / 1000).toFixed(1)}s)`);
  };
  await podmanOk(args, {
    onLine: (line) => {
      if (/^\[\d+\/\d+\] (STEP \d+\/\d+|COMMIT)/.test(line) || /^STEP \d+\/\d+/.test(line)) {
        endStep();
        step = line.length > 140 ? `${line.slice(0, 140)}...` : line;
        stepStarted = Date.now();
      } else if (line.startsWith('--> Using cache')) {
        step += ' [cached]';
      }
    },
  });
  endStep();
}

/** Builds controller/Dockerfile on the local base image. */
export async function buildControllerImage({
  tag = defaultTag,
  noCache = false,
}: { tag?: string; noCache?: boolean } = {}): Promise<BuildResult> {
  ensurePodman();
  const base = await nodeBaseImageBuilt();
  const started = Date.now();
  await withProgress(
    'image',
    `building controller/Dockerfile as ${tag} (podman build, NODE_IMAGE=${base}${noCache ? ', no layer cache' : ''})`,
    () =>
      buildImage({
        dockerfile: join(root, 'controller', 'Dockerfile'),
        context: root,
        tag,
        buildArgs: { NODE_IMAGE: base },
        volumes: [`${npmBuildConfig()}:/usr/local/etc:ro`],
        noCache,
      }),
  );
  const id = (await podmanOk(['image', 'inspect', '--format', '{{.Id}}', tag])).trim();
  await pruneImages(base);
  return { image: tag, id, base, seconds: (Date.now() - started) / 1000 };
}

/** What controller/Dockerfile builds from (its .dockerignore lets in no more), as a release's tree holds them. */
const imageSources = [
  'controller/Dockerfile',
  '.dockerignore',
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'controller/tsconfig.build.json',
  'controller/src',
];

/**
 * The controller image of a published release, built from that release's tree (`commit`, extracted with
 * `git archive`) with its own Dockerfile, named `<repository>:<version>`, and saved as an OCI archive that a
 * real node imports. The archive is cached under the project's cache, keyed by the commit, so a machine (and
 * a CI runner with a kept cache) builds it once.
 */
export async function buildReleaseControllerImage(
  commit: string,
  version: string,
  repository = 'localhost/ml-operator/controller',
): Promise<ImageArchive & { cached: boolean; seconds: number }> {
  const name = `${repository}:${version}`;
  const dir = join(cacheRoot(), 'images');
  const archive = join(dir, `controller-${version}-${commit.slice(0, 12)}.oci.tar`);
  if (existsSync(archive)) return { name, archive, cached: true, seconds: 0 };
  ensurePodman();
  const base = await nodeBaseImageBuilt();
  const started = Date.now();
  const tree = mkdtempSync(join(tmpdir(), `ml-operator-release-${commit.slice(0, 7)}-`));
  try {
    extractAt(commit, pathsAt(commit, imageSources), tree);
    await withProgress(
      'image',
      `building the controller image of ${version} (commit ${commit.slice(0, 7)}) as ${name} from its own tree`,
      () =>
        buildImage({
          dockerfile: join(tree, 'controller', 'Dockerfile'),
          context: tree,
          tag: name,
          buildArgs: { NODE_IMAGE: base },
          volumes: [`${npmBuildConfig()}:/usr/local/etc:ro`],
        }),
    );
    mkdirSync(dir, { recursive: true });
    const tmp = `${archive}.tmp-${process.pid}`;
    await podmanOk(['save', '--format', 'oci-archive', '-o', tmp, name]);
    renameSync(tmp, archive);
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
  return { name, archive, cached: false, seconds: (Date.now() - started) / 1000 };
}

/** The working tree's controller image, named `<repository>:<tag>`, saved as an OCI archive in `dir` for a real node to import. */
export async function controllerImageArchive(
  dir: string,
  tag: string,
  repository = 'localhost/ml-operator/controller',
): Promise<ImageArchive & { seconds: number }> {
  const built = await buildControllerImage({ tag: `${repository}:${tag}` });
  mkdirSync(dir, { recursive: true });
  const archive = join(dir, `controller-${tag}.oci.tar`);
  rmSync(archive, { force: true });
  await podmanOk(['save', '--format', 'oci-archive', '-o', archive, built.image]);
  return { name: built.image, archive, seconds: built.seconds };
}

/**
 * Keeps podman's store from growing without bound: base images of older recipes (those of
 * `currentBase`'s repository but another tag) lose their tag, and untagged images (stages of earlier
 * builds, the layer cache) older than a day are removed. A build a day later may redo its `npm ci`
 * or `apt-get install` steps (about 25 s each).
 */
export async function pruneImages(currentBase: string): Promise<void> {
  const repository = currentBase.slice(0, currentBase.lastIndexOf(':'));
  const bases = (
    await podmanOk(['images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `reference=${repository}`])
  )
    .split('\n')
    .filter(Boolean);
  for (const old of bases.filter((b) => b !== currentBase)) await podman(['untag', old]);
  await podman(['image', 'prune', '--force', '--filter', 'until=24h']);
}

export interface Layer {
  /** The Dockerfile instruction (or import) that made it. */
  createdBy: string;
  /** Its size unpacked, in bytes. */
  size: number;
  /** Its size as a registry stores it (gzip), when known. */
  compressed?: number;
}

/** The image's layers, oldest first, with their unpacked sizes. */
export async function imageLayers(image: string): Promise<Layer[]> {
  const config = (JSON.parse(await podmanOk(['image', 'inspect', image])) as unknown[])[0] as {
    History: { created_by?: string; comment?: string; empty_layer?: boolean }[];
    RootFS: { Layers: string[] };
  };
  const history = (
    JSON.parse(await podmanOk(['history', '--format', 'json', image])) as { CreatedBy: string; size: number }[]
  ).reverse();
  if (history.length !== config.History.length)
    throw new Error(`podman history lists ${history.length} entries, the image config ${config.History.length}`);
  const layers = config.History.flatMap((h, i) =>
    h.empty_layer
      ? []
      : [
          {
            createdBy: (h.created_by ?? '')
              .replace(/^\/bin\/sh -c (#\(nop\) )?/, '')
              .replace(/\s+/g, ' ')
              .trim(),
            size: history[i].size,
          },
        ],
  );
  if (layers.length !== config.RootFS.Layers.length)
    throw new Error(`${layers.length} layer-making history entries for ${config.RootFS.Layers.length} layers`);
  return layers;
}

export interface Pushed {
  reference: string;
  digest: string;
  /** Compressed sizes of the layers, oldest first, from the manifest the registry serves. */
  layerSizes: number[];
  configSize: number;
}

/** Pushes `image` to `registryHost` as `repository:tag` and reads back the manifest the registry serves. */
export async function pushImage(image: string, registryHost: string, repository: string, tag: string): Promise<Pushed> {
  const reference = `${registryHost}/${repository}:${tag}`;
  const digestFile = join(mkdtempSync(join(tmpdir(), 'ml-operator-push-')), 'digest');
  try {
    await withProgress('image', `pushing to ${reference}`, () =>
      podmanOk(['push', '--tls-verify=false', '--digestfile', digestFile, image, `docker://${reference}`]),
    );
    const digest = readFileSync(digestFile, 'utf8').trim();
    const response = await fetch(`http://${registryHost}/v2/${repository}/manifests/${tag}`, {
      headers: {
        accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
      },
    });
    if (!response.ok) throw new Error(`GET the manifest of ${reference}: ${response.status} ${await response.text()}`);
    const served = response.headers.get('docker-content-digest');
    if (served !== digest) throw new Error(`the registry serves ${reference} as ${served}, podman pushed ${digest}`);
    const manifest = (await response.json()) as { config: { size: number }; layers: { size: number }[] };
    return { reference, digest, layerSizes: manifest.layers.map((l) => l.size), configSize: manifest.config.size };
  } finally {
    rmSync(dirname(digestFile), { recursive: true, force: true });
  }
}

export interface RunCheck {
  what: string;
  code: number;
  output: string;
}

/**
 * Runs the image as the chart runs its containers: root filesystem read-only, user 65532, no network.
 * `extra` goes before the image (mounts, environment, --entrypoint).
 */
export async function runReadOnly(
  image: string,
  args: readonly string[],
  extra: readonly string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return podman(['run', '--rm', '--read-only', `--user=${imageUser}`, '--network=none', ...extra, image, ...args], {
    timeoutMs: 120_000,
  });
}

function packArchive(dir: string, files: Record<string, string>, archive: string): void {
  const src = join(dir, `${archive}.src`);
  mkdirSync(src, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(src, name), content);
  const names = Object.keys(files);
  if (archive.endsWith('.zip')) execOkSync('zip', ['-q', join(dir, archive), ...names], { cwd: src });
  else execOkSync('tar', ['-czf', join(dir, archive), ...names], { cwd: src });
}

/**
 * The image at work, read-only as user 65532: the controller refuses an unknown flag (exit 2, after
 * loading its whole module graph), the fetcher and the model agent print their usage (exit 2), and the fetcher unpacks a
 * .tar.gz and a .zip from a read-only claim (pvc://) into a volume it owns (exit 0, the files there).
 */
export async function checkImage(image: string): Promise<RunCheck[]> {
  const checks: RunCheck[] = [];
  const record = (what: string, r: { code: number; stdout: string; stderr: string }) => {
    checks.push({ what, code: r.code, output: (r.stdout + r.stderr).trim() });
    return r;
  };
  record('controller --no-such-flag', await runReadOnly(image, ['--no-such-flag']));
  record('fetcher without arguments', await runReadOnly(image, ['/app/dist/fetcher/main.js'], ['--entrypoint=node']));
  record('agent without arguments', await runReadOnly(image, ['/app/dist/agent/main.js'], ['--entrypoint=node']));
  const scratch = mkdtempSync(join(tmpdir(), 'ml-operator-image-run-'));
  try {
    const claim = join(scratch, 'claim');
    mkdirSync(claim);
    const files = { 'config.json': '{"model":"tiny"}\n', 'weights.bin': 'w'.repeat(4096) };
    packArchive(claim, files, 'model.tar.gz');
    packArchive(claim, files, 'model.zip');
    chmodSync(scratch, 0o755);
    for (const archive of ['model.tar.gz', 'model.zip']) {
      const volume = join(scratch, `volume-${archive}`);
      mkdirSync(volume);
      chownSync(volume, 65532, 65532);
      const r = record(
        `fetcher pvc://models/${archive}`,
        await runReadOnly(
          image,
          ['/app/dist/fetcher/main.js', `pvc://models/${archive}`, '/opt/ml/model'],
          ['--entrypoint=node', `--volume=${claim}:/mnt/artifact-source/models:ro`, `--volume=${volume}:/opt/ml/model`],
        ),
      );
      const unpacked = existsSync(volume)
        ? readdirSync(volume)
            .filter((f) => !f.startsWith('.'))
            .sort()
        : [];
      const same =
        unpacked.join(',') === Object.keys(files).sort().join(',') &&
        readFileSync(join(volume, 'config.json'), 'utf8') === files['config.json'];
      if (r.code === 0 && !same) checks.at(-1)!.code = -1;
      checks.at(-1)!.output += `\nunpacked: ${unpacked.join(', ') || '(nothing)'}`;
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return checks;
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** The size report: total and per layer, unpacked and compressed. */
export function sizeReport(layers: readonly Layer[], pushed?: Pushed): string {
  const rows = layers.map((l, i) => ({ ...l, compressed: pushed?.layerSizes[i] }));
  const total = rows.reduce((s, l) => s + l.size, 0);
  const compressed = pushed ? pushed.layerSizes.reduce((s, n) => s + n, 0) : undefined;
  const lines = [
    `image size: ${mb(total)} unpacked${compressed !== undefined ? `, ${mb(compressed)} compressed (the layers as the registry stores them)` : ''}; ${rows.length} layers:`,
    `  ${'UNPACKED'.padStart(10)}  ${'COMPRESSED'.padStart(10)}  CREATED BY`,
    ...rows.map(
      (l) =>
        `  ${mb(l.size).padStart(10)}  ${(l.compressed !== undefined ? mb(l.compressed) : '-').padStart(10)}  ${l.createdBy.length > 110 ? `${l.createdBy.slice(0, 110)}...` : l.createdBy}`,
    ),
  ];
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--no-cache' && !a.startsWith('--tag='));
  if (unknown.length) {
    process.stderr.write(`unknown argument ${unknown.join(' ')}\nusage: npm run image [-- --no-cache] [--tag=NAME]\n`);
    process.exit(2);
  }
  const tag = args.find((a) => a.startsWith('--tag='))?.slice('--tag='.length) ?? defaultTag;
  const started = Date.now();
  ensureDebianPackages(imagePackages, 'npm run image');
  const hadBase = (await podman(['image', 'exists', baseImage()])).code === 0;
  const built = await buildControllerImage({ tag, noCache: args.includes('--no-cache') });
  const baseSize = (await imageLayers(built.base)).reduce((s, l) => s + l.size, 0);
  log(`image: base ${built.base}: ${mb(baseSize)} unpacked${hadBase ? ' (cached)' : ''}`);
  const registry = await startRegistry();
  let pushed: Pushed;
  try {
    pushed = await pushImage(built.image, registry.host, 'ml-operator/controller', 'dev');
  } finally {
    await registry.stop();
  }
  process.stdout.write(
    `${built.image} (${built.id.slice(0, 12)}), built in ${built.seconds.toFixed(1)}s; pushed as ${pushed.reference}@${pushed.digest}\n`,
  );
  process.stdout.write(`${sizeReport(await imageLayers(built.image), pushed)}\n`);
  const checks = await withProgress('image', `running the image read-only as user ${imageUser}`, () =>
    checkImage(built.image),
  );
  const expected: Record<string, number> = {
    'controller --no-such-flag': 2,
    'fetcher without arguments': 2,
    'agent without arguments': 2,
  };
  let failed = 0;
  for (const c of checks) {
    const want = expected[c.what] ?? 0;
    const ok = c.code === want;
    if (!ok) failed++;
    process.stdout.write(
      `${ok ? 'ok  ' : 'FAIL'} ${c.what}: exit ${c.code} (expected ${want})\n${c.output
        .split('\n')
        .map((l) => `       ${l.length > 200 ? `${l.slice(0, 200)}...` : l}`)
        .join('\n')}\n`,
    );
  }
  log(`image: done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  process.exit(failed ? 1 : 0);
}
