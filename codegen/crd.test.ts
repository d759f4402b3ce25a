// The CRDs made from the repository's schemas. `helm template` of the chart (its own tests) is the
// real render check; here the few Helm directives the generator writes are evaluated by hand, which
// is enough to check the structure and that the schema survives YAML and Helm escaping unchanged.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { escapeForHelm, helmCrdTemplate, plainCrdManifest, toYaml } from './crd.ts';
import { header, loadKinds } from './outputs.ts';

const root = join(import.meta.dirname, '..');
const sources = readdirSync(join(root, 'schemas')).map((name) => ({
  path: `schemas/${name}`,
  text: readFileSync(join(root, 'schemas', name), 'utf8'),
}));
const kinds = loadKinds(sources);

const labelsOfRelease = 'app.kubernetes.io/name: ml-operator\n    app.kubernetes.io/instance: test';

/** Evaluates the directives helmCrdTemplate writes, as Helm would for the given values. */
function renderLikeHelm(template: string, values: { enabled: boolean; keep: boolean }): string {
  const lines = template.split('\n');
  expect(lines[0]).toBe(`{{/* ${header} */}}`);
  const escapedBraces = /\{\{ "(\{\{|\}\})" \}\}/g;
  const withoutDirectives = lines
    .slice(1)
    .join('\n')
    .replace(/\s*\{\{- include "ml-operator\.labels" \. \| nindent 4 \}\}/, `\n    ${labelsOfRelease}`)
    .replace(/\s*\{\{- if \.Values\.crds\.keep \}\}([\s\S]*?)\s*\{\{- end \}\}/, (_, body: string) =>
      values.keep ? body : '',
    )
    .replace(/^\{\{- if \.Values\.crds\.enabled \}\}\n([\s\S]*?)\s*\{\{- end \}\}\n$/, (_, body: string) =>
      values.enabled ? `${body}\n` : '',
    );
  // Any other action would be a directive this function does not know, or an unescaped brace pair.
  expect(withoutDirectives.replace(escapedBraces, '')).not.toMatch(/\{\{/);
  return withoutDirectives.replace(escapedBraces, '$1');
}

function expectedSchema(path: string): unknown {
  const { $schema, $id, 'x-ml-operator-crd': crd, ...schema } = JSON.parse(readFileSync(join(root, path), 'utf8'));
  return schema;
}

describe('Helm CRD templates', () => {
  const expected = {
    MachineLearningModel: {
      plural: 'machinelearningmodels',
      short: 'mlm',
      columns: ['Snapshot-Of', 'Endpoint', 'Config-Version', 'Image', 'Artifact', 'Age'],
    },
    MachineLearningEndpointConfig: {
      plural: 'machinelearningendpointconfigs',
      short: 'mlec',
      columns: ['Snapshot-Of', 'Endpoint', 'Version', 'First-Model', 'Age'],
    },
    MachineLearningEndpoint: {
      plural: 'machinelearningendpoints',
      short: 'mle',
      columns: ['State', 'Version', 'Host', 'Ready', 'Rollout', 'Config', 'Age'],
    },
  };

  it('covers the three kinds', () => {
    expect(kinds.map(({ crd }) => crd.kind).sort()).toEqual(Object.keys(expected).sort());
  });

  for (const kind of kinds) {
    const want = expected[kind.crd.kind as keyof typeof expected];
    it(`${kind.crd.kind}: a namespaced v1 CRD with names, status subresource and printer columns`, () => {
      const crd = parse(renderLikeHelm(helmCrdTemplate(kind, header), { enabled: true, keep: true }), {
        version: '1.1',
      });
      expect(crd.apiVersion).toBe('apiextensions.k8s.io/v1');
      expect(crd.kind).toBe('CustomResourceDefinition');
      expect(crd.metadata.name).toBe(`${want.plural}.ml-operator.dev`);
      expect(crd.metadata.labels).toEqual({
        'app.kubernetes.io/name': 'ml-operator',
        'app.kubernetes.io/instance': 'test',
      });
      expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
      expect(crd.spec.group).toBe('ml-operator.dev');
      expect(crd.spec.scope).toBe('Namespaced');
      expect(crd.spec.names).toMatchObject({
        kind: kind.crd.kind,
        plural: want.plural,
        shortNames: [want.short],
        categories: ['ml'],
      });
      expect(crd.spec.versions).toHaveLength(1);
      const [version] = crd.spec.versions;
      expect(version).toMatchObject({ name: 'v1alpha1', served: true, storage: true, subresources: { status: {} } });
      expect(version.additionalPrinterColumns.map((c: { name: string }) => c.name)).toEqual(want.columns);
      expect(version.schema.openAPIV3Schema).toEqual(expectedSchema(kind.file));
    });
  }

  it('keeps descriptions, patterns and messages with braces, quotes, colons and hashes intact through Helm', () => {
    const path = 'codegen/testdata/widget.schema.json';
    const [widget] = loadKinds([{ path, text: readFileSync(join(root, path), 'utf8') }]);
    const crd = parse(renderLikeHelm(helmCrdTemplate(widget, header), { enabled: true, keep: true }), {
      version: '1.1',
    });
    expect(crd.spec.versions[0].schema.openAPIV3Schema).toEqual(expectedSchema(path));
  });

  it('renders nothing when crds.enabled is false, and no keep annotation without crds.keep', () => {
    const template = helmCrdTemplate(kinds[0], header);
    expect(renderLikeHelm(template, { enabled: false, keep: true })).toBe('');
    expect(parse(renderLikeHelm(template, { enabled: true, keep: false })).metadata.annotations).toBeUndefined();
  });
});

describe('escapeForHelm', () => {
  it('turns every {{ and }} into an action that prints it', () => {
    expect(escapeForHelm('a {{ .x }} b }} {{{')).toBe('a {{ "{{" }} .x {{ "}}" }} b {{ "}}" }} {{ "{{" }}{');
  });
});

describe('toYaml', () => {
  it('quotes what a YAML 1.1 reader (Kubernetes, Helm) would take for a boolean or a number', () => {
    const tricky = [
      'yes',
      'no',
      'on',
      'off',
      'y',
      'True',
      '0755',
      '1:20',
      '1e3',
      '~',
      'a: b',
      '# x',
      'it\'s "quoted"',
      '^\\d+$',
    ];
    const yaml = toYaml({ tricky });
    expect(parse(yaml, { version: '1.1' })).toEqual({ tricky });
    expect(parse(yaml, { version: '1.2' })).toEqual({ tricky });
  });
});

describe('plainCrdManifest', () => {
  it('holds every CRD with the plain labels and no Helm directive', () => {
    const manifest = plainCrdManifest(kinds, header);
    expect(manifest.startsWith(`# ${header}\n`)).toBe(true);
    // No action of Helm's ({{- ...}}, {{ .Values }}, {{/* */}}, {{ "{{" }}); the placeholders of a check's
    // query ({{namespace}}) are text of the schema and stay as they are.
    expect(manifest).not.toMatch(/\{\{[-\s/"]/);
    expect(manifest).toContain('Placeholders: {{namespace}}');
    const documents = parseAllDocuments(manifest, { version: '1.1' }).map((doc) => doc.toJS());
    expect(documents.map((doc) => doc.metadata.name)).toEqual(kinds.map(({ crd }) => `${crd.plural}.${crd.group}`));
    for (const doc of documents) {
      expect(doc.metadata.labels).toEqual({
        'app.kubernetes.io/name': 'ml-operator',
        'app.kubernetes.io/part-of': 'ml-operator',
      });
      expect(doc.spec.versions[0].subresources).toEqual({ status: {} });
    }
  });
});
