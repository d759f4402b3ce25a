// The annotations of the umbrella Chart.yaml that are derived from the repository, so that they
// never drift from it: Artifact Hub's CRD list (from schemas/) and CRD examples (examples/titanic/),
// the image list (the subchart's image repository at appVersion) for Artifact Hub and in the
// `helm.sh/images` form (HIP-0015), the release's changes (CHANGELOG.md) and whether it is a
// prerelease. Hand-written annotations (license, links, category, ...) are left as they are.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, parse, parseAllDocuments, parseDocument, Scalar, stringify, YAMLMap } from 'yaml';
import { changesOf } from './changelog.ts';
import { subchartDir } from './versions.ts';

/** The annotations this file owns in Chart.yaml. */
export const generatedAnnotationKeys = [
  'artifacthub.io/changes',
  'artifacthub.io/crds',
  'artifacthub.io/crdsExamples',
  'artifacthub.io/images',
  'artifacthub.io/prerelease',
  'helm.sh/images',
] as const;

/** The example whose objects Artifact Hub shows, one per CRD kind. */
export const crdExamplesDir = join('examples', 'titanic');

interface CrdInfo {
  kind: string;
  version: string;
  plural: string;
}

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: Record<string, unknown>;
  [field: string]: unknown;
}

const yamlList = (items: unknown[]) => stringify(items, { lineWidth: 0 });

/** "MachineLearningEndpointConfig" -> "Machine Learning Endpoint Config". */
const displayName = (kind: string) => kind.replace(/([a-z0-9])([A-Z])/g, '$1 $2');

const firstSentence = (text: string) => text.match(/^.*?\.(?=\s|$)/)?.[0] ?? text;

function crds(root: string): { info: CrdInfo; description: string }[] {
  return readdirSync(join(root, 'schemas'))
    .filter((f) => f.endsWith('.schema.json'))
    .sort()
    .map((f) => {
      const schema = JSON.parse(readFileSync(join(root, 'schemas', f), 'utf8')) as {
        'x-ml-operator-crd': CrdInfo;
        description: string;
      };
      return { info: schema['x-ml-operator-crd'], description: schema.description };
    });
}

function exampleObjects(root: string): KubeObject[] {
  const dir = join(root, crdExamplesDir);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as KubeObject | null))
    .filter((o): o is KubeObject => o !== null);
}

/** The generated annotations for the chart in the checkout at `root`, as Chart.yaml holds them. */
export function generatedAnnotations(root: string): Record<string, string> {
  const chart = parse(readFileSync(join(root, 'Chart.yaml'), 'utf8')) as { version: string };
  const subchart = parse(readFileSync(join(root, subchartDir, 'Chart.yaml'), 'utf8')) as { appVersion: string };
  const subchartValues = parse(readFileSync(join(root, subchartDir, 'values.yaml'), 'utf8')) as {
    image: { repository: string };
  };
  const kinds = crds(root);
  const examples = exampleObjects(root);
  const crdExamples = kinds.map(({ info }) => {
    const example = examples.find((o) => o.kind === info.kind);
    if (!example) throw new Error(`${crdExamplesDir}/ has no ${info.kind}: Artifact Hub shows one example of each CRD`);
    return example;
  });
  const images = [{ name: 'controller', image: `${subchartValues.image.repository}:${subchart.appVersion}` }];
  const annotations: Record<string, string> = {
    'artifacthub.io/crds': yamlList(
      kinds.map(({ info, description }) => ({
        kind: info.kind,
        version: info.version,
        name: info.plural,
        displayName: displayName(info.kind),
        description: firstSentence(description),
      })),
    ),
    'artifacthub.io/crdsExamples': yamlList(crdExamples),
    'artifacthub.io/images': yamlList(images),
    'artifacthub.io/prerelease': String(chart.version.includes('-')),
    'helm.sh/images': yamlList(images),
  };
  const changes = changesOf(readFileSync(join(root, 'CHANGELOG.md'), 'utf8'), chart.version);
  if (changes && changes.length > 0) annotations['artifacthub.io/changes'] = yamlList(changes);
  return annotations;
}

/** Chart.yaml's text with the generated annotations set (block literals) and hand-written ones kept. */
export function withGeneratedAnnotations(chartYaml: string, generated: Record<string, string>): string {
  const doc = parseDocument(chartYaml);
  if (doc.errors.length > 0) throw doc.errors[0];
  let annotations = doc.get('annotations', true);
  if (!isMap(annotations)) {
    annotations = new YAMLMap();
    doc.set('annotations', annotations);
  }
  const map = annotations as YAMLMap;
  for (const key of generatedAnnotationKeys) {
    const value = generated[key];
    if (value === undefined) {
      map.delete(key);
      continue;
    }
    const node = new Scalar(value);
    if (value.includes('\n')) node.type = Scalar.BLOCK_LITERAL;
    else node.type = Scalar.QUOTE_DOUBLE;
    map.set(key, node);
  }
  return doc.toString({ lineWidth: 0 });
}
