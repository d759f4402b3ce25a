// npm run codegen             regenerate every output from schemas/
// npm run codegen -- --check  write nothing; list the outputs that are out of date and exit 1 if any
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { header, LintError, outputPaths, renderOutputs, type SourceFile } from './outputs.ts';

const schemaDir = 'schemas';

export interface CodegenReport {
  /** Outputs whose content differs from what the schemas give (or that are missing). */
  stale: string[];
  /** Generated CRD templates whose schema is gone. */
  obsolete: string[];
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function readSources(root: string): Promise<SourceFile[]> {
  const names = (await readdir(join(root, schemaDir))).filter((name) => name.endsWith('.schema.json')).sort();
  return Promise.all(
    names.map(async (name) => ({
      path: `${schemaDir}/${name}`,
      text: await readFile(join(root, schemaDir, name), 'utf8'),
    })),
  );
}

/** Generated files in the CRD template folder that no schema produces any more. */
async function findObsolete(root: string, produced: Set<string>): Promise<string[]> {
  const names = (await readdir(join(root, outputPaths.helmCrdDir)).catch(() => [] as string[])).sort();
  const obsolete: string[] = [];
  for (const name of names) {
    const path = `${outputPaths.helmCrdDir}/${name}`;
    if (produced.has(path)) continue;
    if ((await readIfExists(join(root, path)))?.includes(header)) obsolete.push(path);
  }
  return obsolete;
}

/** Generates into `root` (a repository checkout), or with `check` only reports what is out of date. */
export async function codegen(root: string, { check }: { check: boolean }): Promise<CodegenReport> {
  const outputs = await renderOutputs(await readSources(root));
  const stale: string[] = [];
  for (const { path, content } of outputs) {
    if ((await readIfExists(join(root, path))) !== content) stale.push(path);
  }
  const obsolete = await findObsolete(root, new Set(outputs.map(({ path }) => path)));
  if (!check) {
    for (const { path, content } of outputs.filter(({ path }) => stale.includes(path))) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), content);
    }
    for (const path of obsolete) await rm(join(root, path));
  }
  return { stale, obsolete };
}

async function main(args: string[]): Promise<number> {
  const unknown = args.filter((arg) => arg !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`codegen: unknown argument ${unknown.join(' ')}\nusage: codegen [--check]\n`);
    return 2;
  }
  const check = args.includes('--check');
  const root = dirname(dirname(fileURLToPath(import.meta.url)));
  try {
    const { stale, obsolete } = await codegen(root, { check });
    if (check) {
      if (stale.length === 0 && obsolete.length === 0) {
        process.stdout.write('codegen: every generated file is up to date\n');
        return 0;
      }
      for (const path of stale) process.stderr.write(`codegen: out of date: ${path}\n`);
      for (const path of obsolete) process.stderr.write(`codegen: obsolete (its schema is gone): ${path}\n`);
      process.stderr.write('codegen: run `npm run codegen` and commit the result\n');
      return 1;
    }
    for (const path of stale) process.stdout.write(`codegen: wrote ${path}\n`);
    for (const path of obsolete) process.stdout.write(`codegen: removed ${path}\n`);
    if (stale.length === 0 && obsolete.length === 0)
      process.stdout.write('codegen: nothing to do, every generated file is up to date\n');
    return 0;
  } catch (err) {
    if (!(err instanceof LintError)) throw err;
    process.stderr.write(`codegen: ${err.message}\n`);
    return 1;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
