// Bundles the two programs that model pods run from the controller image (controller/Dockerfile) into
// one ES module each, with the cloud SDKs they use (AWS, Google Cloud, Azure): the artifact fetcher
// (controller/src/fetcher/main.ts -> dist/fetcher/main.js) and the model agent
// (controller/src/agent/main.ts -> dist/agent/main.js). The SDKs ship every build they have (browser,
// React Native, CommonJS and ES modules) and the Azure identity library pulls its browser sibling:
// installed as production dependencies they would more than double the image's node_modules;
// bundled, only what each program reaches is kept.
//   node controller/bundle.ts [distDir]     (default controller/dist)
import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

export const bundledPrograms = ['fetcher', 'agent'] as const;

/** Writes `<program>/main.js` under `distDir`; returns what it imports from outside Node.js itself (nothing, when whole). */
export async function bundleProgram(
  program: (typeof bundledPrograms)[number],
  distDir: string = join(root, 'controller', 'dist'),
): Promise<{ externalImports: string[] }> {
  const { metafile } = await build({
    entryPoints: [join(root, 'controller', 'src', program, 'main.ts')],
    // The agent runs beside every capturing model: what it imports dynamically (its object-store
    // writers with their SDKs) goes into chunks/, read only when used, so that an agent writing to a
    // volume keeps the SDKs out of its memory (about 64 MiB resident instead of 88).
    ...(program === 'agent'
      ? { outdir: join(distDir, program), entryNames: 'main', splitting: true, chunkNames: 'chunks/[name]-[hash]' }
      : { outfile: join(distDir, program, 'main.js') }),
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    // CommonJS modules inside an ES module bundle still call require() for Node's own modules.
    banner: {
      js: "import { createRequire as __bundleCreateRequire } from 'node:module'; const require = __bundleCreateRequire(import.meta.url);",
    },
    logLevel: 'warning',
    metafile: true,
  });
  const externalImports = new Set<string>();
  for (const output of Object.values(metafile.outputs)) {
    for (const i of output.imports)
      if (i.external && !i.path.startsWith('node:') && !builtinModules.includes(i.path)) externalImports.add(i.path);
  }
  return { externalImports: [...externalImports].sort() };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const program of bundledPrograms) await bundleProgram(program, process.argv[2]);
}
