// Model artifacts the local cluster's artifact server holds: small .tar.gz archives with a
// model.json, published under the paths the examples and tests name (https://models.example.com/...).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { execOkSync } from '../exec.ts';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
/** The host name the artifact server answers for, in the cluster's /etc/hosts. */
export const artifactHost = 'models.example.com';

/** Writes `<dir>/<path>`: a .tar.gz holding model.json with the given content, or the bytes given. */
export function publishArtifact(dir: string, path: string, content: Record<string, unknown> | Buffer): void {
  const file = join(dir, path.replace(/^\/+/, ''));
  mkdirSync(dirname(file), { recursive: true });
  if (Buffer.isBuffer(content)) {
    writeFileSync(file, content);
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'ml-operator-artifact-'));
  try {
    writeFileSync(join(work, 'model.json'), JSON.stringify(content, null, 2) + '\n');
    execOkSync('tar', ['-czf', file, '-C', work, 'model.json']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The artifact paths on the artifact host that the examples name. */
export function exampleArtifactPaths(): string[] {
  const paths = new Set<string>();
  const examples = join(root, 'examples');
  for (const dir of readdirSync(examples)) {
    for (const file of readdirSync(join(examples, dir)).filter((f) => f.endsWith('.yaml'))) {
      for (const doc of parseAllDocuments(readFileSync(join(examples, dir, file), 'utf8'))) {
        const artifact = (doc.toJS() as { spec?: { artifact?: string } } | null)?.spec?.artifact;
        const url = artifact?.startsWith('http') ? new URL(artifact) : undefined;
        if (url?.hostname === artifactHost) paths.add(url.pathname);
      }
    }
  }
  return [...paths];
}

/** Archives for the examples, plus `titanic.tar.gz` that tests use. */
export function seedArtifacts(dir: string): void {
  for (const path of [...exampleArtifactPaths(), '/titanic.tar.gz']) {
    const name = path
      .split('/')
      .at(-1)!
      .replace(/\.(tar\.gz|tgz|zip)$/, '');
    publishArtifact(dir, path, { name, format: 'demo', publishedBy: 'ml-operator local cluster' });
  }
}
