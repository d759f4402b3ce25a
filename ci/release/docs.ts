// npm run docs             regenerate the chart documentation that is derived from the chart itself:
//                          the README's values tables and the generated Chart.yaml annotations
// npm run docs -- --check  write nothing; list what is out of date and exit 1 if anything is
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedAnnotations, withGeneratedAnnotations } from './artifacthub.ts';
import { spliceValuesSection, valuesSection } from './values-docs.ts';
import { subchartDir } from './versions.ts';

/** The generated files of the checkout at `root` and the content they must have. */
export function renderDocs(root: string): { path: string; content: string }[] {
  const read = (path: string) => readFileSync(join(root, path), 'utf8');
  const section = valuesSection(read('values.yaml'), read(join(subchartDir, 'values.yaml')));
  return [
    { path: 'README.md', content: spliceValuesSection(read('README.md'), section) },
    { path: 'Chart.yaml', content: withGeneratedAnnotations(read('Chart.yaml'), generatedAnnotations(root)) },
  ];
}

/** Regenerates into `root`, or with `check` only; returns the files that were (or are) out of date. */
export function docs(root: string, { check }: { check: boolean }): string[] {
  const stale = renderDocs(root).filter(({ path, content }) => readFileSync(join(root, path), 'utf8') !== content);
  if (!check) for (const { path, content } of stale) writeFileSync(join(root, path), content);
  return stale.map(({ path }) => path);
}

function main(args: string[]): number {
  const usage = 'usage: npm run docs [-- --check] [--dir CHECKOUT]';
  let check = false;
  let root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--check') check = true;
    else if (args[i] === '--dir' && args[i + 1]) root = args[++i];
    else {
      process.stderr.write(`docs: unknown argument ${args[i]}\n${usage}\n`);
      return 2;
    }
  }
  const stale = docs(root, { check });
  if (!check) {
    process.stdout.write(stale.length === 0 ? 'docs: already up to date\n' : `docs: updated ${stale.join(', ')}\n`);
    return 0;
  }
  if (stale.length === 0) {
    process.stdout.write('docs: the values tables and the generated Chart.yaml annotations are up to date\n');
    return 0;
  }
  for (const path of stale) process.stderr.write(`docs: out of date: ${path}\n`);
  process.stderr.write('docs: run `npm run docs` and commit the result\n');
  return 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`docs: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
