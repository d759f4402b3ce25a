// The controller image recipe (Dockerfile, tsconfig.build.json, .dockerignore), checked without a
// container engine: the build stage's compile step runs for real into a temporary directory, the
// compiled entrypoints start from the image's layout (/app/package.json, /app/node_modules,
// /app/dist) and need only production dependencies, and the Dockerfile says what the chart relies on.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import {
  azuriteAccount,
  minioRoot,
  startAzurite,
  startFakeGcs,
  startMinio,
  type RunningStore,
} from '../ci/object-stores.ts';
import { bundledPrograms, bundleProgram } from './bundle.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const dockerfile = readFileSync(join(root, 'controller', 'Dockerfile'), 'utf8');
let app: string;
let compile: { status: number | null; output: string };
let bundles: Record<string, { externalImports: string[] }>;

function files(dir: string, suffix: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith(suffix))
    .sort();
}

beforeAll(async () => {
  // /app as the image lays it out; the build stage's command, with the output sent here.
  app = mkdtempSync(join(tmpdir(), 'ml-operator-image-'));
  const tsc = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules/typescript/bin/tsc'),
      '-p',
      'controller/tsconfig.build.json',
      '--outDir',
      join(app, 'dist'),
    ],
    {
      cwd: root,
      encoding: 'utf8',
    },
  );
  compile = { status: tsc.status, output: `${tsc.stdout}${tsc.stderr}` };
  bundles = {};
  for (const program of bundledPrograms) bundles[program] = await bundleProgram(program, join(app, 'dist'));
  cpSync(join(root, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(app, 'node_modules'));
}, 120_000);

afterAll(() => {
  if (app) rmSync(app, { recursive: true, force: true });
});

describe('the build stage', () => {
  it('compiles controller/src with controller/tsconfig.build.json', () => {
    expect(compile.output).toBe('');
    expect(compile.status).toBe(0);
  });

  it('emits one module per source, no tests, and rewrites relative imports to .js; the fetcher and the agent are one bundle each', () => {
    const src = join(root, 'controller', 'src');
    const sources = files(src, '.ts').filter(
      (f) =>
        !f.endsWith('.test.ts') && !f.startsWith('fetcher/') && !f.startsWith('agent/') && !f.includes('/testing/'),
    );
    const emitted = files(join(app, 'dist'), '.js').filter((f) => !f.startsWith('agent/chunks/'));
    expect(emitted).toEqual(
      [...sources.map((f) => f.replace(/\.ts$/, '.js')), 'fetcher/main.js', 'agent/main.js'].sort(),
    );
    expect(files(join(app, 'dist', 'agent', 'chunks'), '.js').length).toBeGreaterThan(0);
    for (const file of files(join(app, 'dist'), '.js')) {
      expect(readFileSync(join(app, 'dist', file), 'utf8'), file).not.toMatch(/from ['"]\.{1,2}\/[^'"]*\.ts['"]/);
    }
  });

  it('needs only the production dependencies (npm ci --omit=dev)', () => {
    const { dependencies } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const packages = new Set<string>();
    // Each bundle holds its packages: it may import nothing but Node.js's own modules.
    expect(bundles).toEqual({ fetcher: { externalImports: [] }, agent: { externalImports: [] } });
    for (const file of files(join(app, 'dist'), '.js').filter(
      (f) => f !== 'fetcher/main.js' && !f.startsWith('agent/'),
    )) {
      for (const [, specifier] of readFileSync(join(app, 'dist', file), 'utf8').matchAll(
        /(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g,
      )) {
        if (specifier.startsWith('.') || specifier.startsWith('node:')) continue;
        packages.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]);
      }
    }
    expect([...packages].filter((p) => !(p in dependencies))).toEqual([]);
  });

  // Both entrypoints load their whole module graph before they read their arguments: a bad-usage
  // exit (2) proves that every import resolves in the image's layout.
  it.each([
    ['the controller', 'main.js', ['--no-such-flag']],
    ['the artifact fetcher', 'fetcher/main.js', []],
    ['the model agent', 'agent/main.js', []],
  ])('starts %s from /app/dist/%s', (_what, entrypoint, args) => {
    const run = spawnSync(process.execPath, [join(app, 'dist', entrypoint), ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH },
    });
    expect(run.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|ERR_UNKNOWN_FILE_EXTENSION|SyntaxError/);
    expect(run.status, run.stderr).toBe(2);
  });
});

// The bundle carries the SDKs: it downloads from each kind of store as the image's fetcher, a
// process of its own with only the environment a pod gives it.
describe('the bundled fetcher against real object stores', () => {
  let stores: RunningStore[] = [];
  let work: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'ml-operator-bundle-'));
    const [minio, gcs, azurite] = await Promise.all([
      startMinio(),
      startFakeGcs({ 'models/w.bin': 'gcs-weights' }),
      startAzurite(),
    ]);
    stores = [minio, gcs, azurite];
    const s3 = new S3Client({
      endpoint: minio.url,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: minioRoot.user, secretAccessKey: minioRoot.password },
    });
    await s3.send(new CreateBucketCommand({ Bucket: 'models' }));
    await s3.send(new PutObjectCommand({ Bucket: 'models', Key: 'w.bin', Body: 's3-weights' }));
    s3.destroy();
    const container = BlobServiceClient.fromConnectionString(
      `DefaultEndpointsProtocol=http;AccountName=${azuriteAccount.name};AccountKey=${azuriteAccount.key};BlobEndpoint=${azurite.url}/${azuriteAccount.name};`,
    ).getContainerClient('models');
    await container.create();
    await container.getBlockBlobClient('w.bin').uploadData(Buffer.from('azure-weights'));
  }, 120_000);
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.stop()));
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it.each([
    [
      's3://models/w.bin',
      's3-weights',
      (): Record<string, string> => ({
        AWS_ACCESS_KEY_ID: minioRoot.user,
        AWS_SECRET_ACCESS_KEY: minioRoot.password,
        AWS_ENDPOINT_URL: stores[0].url,
        AWS_EC2_METADATA_DISABLED: 'true',
      }),
    ],
    ['gs://models/w.bin', 'gcs-weights', (): Record<string, string> => ({ STORAGE_EMULATOR_HOST: stores[1].url })],
    [
      `azure://${azuriteAccount.name}/models/w.bin`,
      'azure-weights',
      (): Record<string, string> => ({
        AZURE_STORAGE_KEY: azuriteAccount.key,
        AZURE_STORAGE_BLOB_ENDPOINT: `${stores[2].url}/${azuriteAccount.name}`,
      }),
    ],
  ])('downloads %s', (uri, content, env) => {
    const target = mkdtempSync(join(work, 'target-'));
    const run = spawnSync(process.execPath, [join(app, 'dist', 'fetcher', 'main.js'), uri, target], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...env() },
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(readFileSync(join(target, 'w.bin'), 'utf8')).toBe(content);
  });
});

describe('controller/Dockerfile', () => {
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const runtime = stages.at(-1)!;

  it('builds from the official Node.js 24 image in every stage', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24(-[a-z]+)?$/m);
    expect(stages.map((s) => s.split(/\s/)[0])).toEqual(['${NODE_IMAGE}', '${NODE_IMAGE}', '${NODE_IMAGE}']);
  });

  it('compiles with tsconfig.build.json and installs production dependencies only for the runtime', () => {
    expect(stages[0]).toMatch(/^RUN npm ci\b/m);
    expect(stages[0]).toMatch(/^RUN node node_modules\/typescript\/bin\/tsc -p controller\/tsconfig\.build\.json$/m);
    expect(stages[1]).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(runtime).toMatch(/^COPY --from=dependencies \/app\/node_modules \.\/node_modules$/m);
    expect(runtime).toMatch(/^COPY --from=build \/src\/controller\/dist \.\/dist$/m);
    expect(stages[0]).toMatch(/^RUN node controller\/bundle\.ts$/m);
    expect(runtime).not.toMatch(/npm (ci|install)/);
  });

  // Node refuses to start when NODE_OPTIONS holds a flag it does not allow there (most V8 flags):
  // every process of the image, the controller and the fetcher alike, would exit with 9.
  it('sets only NODE_OPTIONS that node accepts there', () => {
    const nodeOptions = [...runtime.matchAll(/NODE_OPTIONS="([^"]*)"/g)].map((m) => m[1]);
    expect(nodeOptions.length).toBeGreaterThan(0);
    for (const value of nodeOptions) {
      const run = spawnSync(process.execPath, ['-e', ''], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, NODE_OPTIONS: value },
      });
      expect(run.stderr, value).toBe('');
      expect(run.status, value).toBe(0);
    }
  });

  it('runs as the non-root user 65532 with node /app/dist/main.js, and carries tar and unzip for the fetcher', () => {
    expect(runtime).toMatch(/^WORKDIR \/app$/m);
    expect(runtime).toMatch(/^USER 65532:65532$/m);
    const entrypoint = JSON.parse(
      runtime
        .trim()
        .split('\n')
        .at(-1)!
        .replace(/^ENTRYPOINT /, ''),
    ) as string[];
    expect(entrypoint[0]).toBe('node');
    expect(entrypoint.at(-1)).toBe('/app/dist/main.js');
    expect(entrypoint.slice(1, -1).every((flag) => flag.startsWith('--'))).toBe(true);
    expect(runtime).toMatch(/apt-get install -y --no-install-recommends [^\n]*\btar\b[^\n]*\bunzip\b/);
  });

  it('copies from the build context only what .dockerignore lets through', () => {
    const allowed = readFileSync(join(root, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('!'))
      .map((line) => line.slice(1));
    expect(readFileSync(join(root, '.dockerignore'), 'utf8')).toMatch(/^\*$/m);
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].split(/\s+/));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      const path = source.replace(/\/$/, '');
      expect(allowed, source).toContain(path);
      expect(existsSync(join(root, path)), `${source} exists`).toBe(true);
    }
  });

  it('matches how the chart runs it: user 65532, read-only root filesystem', () => {
    const values = readFileSync(join(root, 'charts', 'controller', 'values.yaml'), 'utf8');
    expect(values).toMatch(/^ {2}runAsUser: 65532$/m);
    expect(values).toMatch(/^ {2}readOnlyRootFilesystem: true$/m);
  });
});
