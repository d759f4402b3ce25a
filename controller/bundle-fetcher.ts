// Bundles the artifact fetcher (controller/src/fetcher/main.ts) into one ES module with the cloud
// SDKs it uses (AWS, Google Cloud, Azure), for the controller image (controller/Dockerfile). The
// SDKs ship every build they have (browser, React Native, CommonJS and ES modules) and the Azure
// identity library pulls its browser sibling: installed as production dependencies they would more
// than double the image's node_modules; bundled, only what the fetcher reaches is kept.
//   node controller/bundle-fetcher.ts [outfile]     (default controller/dist/fetcher/main.js)
import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** Writes the bundle to `outfile`; returns what it imports from outside Node.js itself (nothing, when whole). */
export async function bundleFetcher(outfile: string = join(root, 'controller', 'dist', 'fetcher', 'main.js')): Promise<{ externalImports: string[] }> {
  const { metafile } = await build({
    entryPoints: [join(root, 'controller', 'src', 'fetcher', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    // CommonJS modules inside an ES module bundle still call require() for Node's own modules.
    banner: { js: "import { createRequire as __fetcherCreateRequire } from 'node:module'; const require = __fetcherCreateRequire(import.meta.url);" },
    logLevel: 'warning',
    metafile: true,
  });
  const externalImports = new Set<string>();
  for (const output of Object.values(metafile.outputs)) {
    for (const i of output.imports) if (i.external && !i.path.startsWith('node:') && !builtinModules.includes(i.path)) externalImports.add(i.path);
  }
  return { externalImports: [...externalImports].sort() };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await bundleFetcher(process.argv[2]);
