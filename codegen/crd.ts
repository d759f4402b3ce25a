// CustomResourceDefinitions: one Helm template per kind for the chart, and one plain manifest with
// all of them for kubectl users. The schema part is serialised by the yaml package (never
// hand-templated), so any description or pattern comes out as valid YAML.
import Handlebars from 'handlebars';
import { stringify } from 'yaml';
import type { KindSchema } from './schema.ts';

export function crdName({ crd }: KindSchema): string {
  return `${crd.plural}.${crd.group}`;
}

/** The CRD's spec: names, one served and stored version with the status subresource, the schema. */
export function crdSpec({ crd, schema }: KindSchema) {
  return {
    group: crd.group,
    names: {
      kind: crd.kind,
      listKind: `${crd.kind}List`,
      plural: crd.plural,
      singular: crd.singular,
      shortNames: crd.shortNames,
      categories: crd.categories,
    },
    scope: 'Namespaced',
    versions: [
      {
        name: crd.version,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: crd.printerColumns,
        schema: { openAPIV3Schema: schema },
      },
    ],
  };
}

/**
 * YAML text of a value. YAML 1.1 rules, because Kubernetes and Helm read YAML with a 1.1 parser:
 * strings such as `yes`, `on` or `0755` get quoted. No line folding, for readable diffs.
 */
export function toYaml(value: unknown): string {
  return stringify(value, { version: '1.1', lineWidth: 0 });
}

/** Text that Helm's template engine renders back to itself: every `{{` and `}}` becomes an action printing it. */
export function escapeForHelm(text: string): string {
  return text.replace(/\{\{|\}\}/g, (braces) => `{{ "${braces}" }}`);
}

// Handlebars fills in the generated parts; `\{{` is Handlebars' escape for the literal `{{` that
// starts a Helm directive.
const helmTemplate = Handlebars.compile(
  `\\{{/* {{header}} */}}
\\{{- if .Values.crds.enabled }}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {{name}}
  labels:
    \\{{- include "ml-operator.labels" . | nindent 4 }}
  \\{{- if .Values.crds.keep }}
  annotations:
    helm.sh/resource-policy: keep
  \\{{- end }}
{{spec}}\\{{- end }}
`,
  { noEscape: true, strict: true },
);

/** The chart's template for one kind's CRD, behind `crds.enabled`, kept on uninstall when `crds.keep`. */
export function helmCrdTemplate(kind: KindSchema, header: string): string {
  return helmTemplate({ header, name: crdName(kind), spec: escapeForHelm(toYaml({ spec: crdSpec(kind) })) });
}

/** Labels of the plain manifest (the chart uses its own label helper instead). */
const plainLabels = { 'app.kubernetes.io/name': 'ml-operator', 'app.kubernetes.io/part-of': 'ml-operator' };

/** All CRDs in one multi-document manifest for `kubectl apply --server-side -f`. */
export function plainCrdManifest(kinds: readonly KindSchema[], header: string): string {
  const documents = kinds.map((kind) =>
    toYaml({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: crdName(kind), labels: plainLabels },
      spec: crdSpec(kind),
    }),
  );
  return `# ${header}\n${documents.map((doc) => `---\n${doc}`).join('')}`;
}
