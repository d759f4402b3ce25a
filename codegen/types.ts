// TypeScript types for the controller, by json-schema-to-typescript from a copy of the schemas
// prepared so that its output is strict and well named.
import { compile, type JSONSchema } from 'json-schema-to-typescript';
import { clone, isIntOrString, jsonEqual, type KindSchema, type SchemaNode } from './schema.ts';

/** Name of the union of all kinds (the root of the combined schema given to the generator). */
const unionName = 'MlOperatorObject';

/**
 * The single schema the generator compiles: every kind (and every titled node, hoisted so that a
 * type used by several kinds, such as Condition, is declared once) under `$defs`, and a root that is
 * the union of the kinds.
 */
export function typescriptSchema(kinds: readonly KindSchema[]): JSONSchema {
  const defs: Record<string, JSONSchema> = {};
  for (const { crd, schema } of kinds) {
    const root = prepareRoot(crd.kind, `${crd.group}/${crd.version}`, schema);
    hoist(root, defs, crd.kind);
  }
  return {
    title: unionName,
    description: 'Any object of the API.',
    anyOf: kinds.map(({ crd }) => ({ $ref: `#/$defs/${crd.kind}` })),
    $defs: defs,
  };
}

/** The root of one kind: typed apiVersion and kind, metadata as client-node's V1ObjectMeta, named Spec and Status. */
function prepareRoot(kind: string, apiVersion: string, schema: SchemaNode): SchemaNode {
  const root = prepareNode(clone(schema));
  const properties = root.properties ?? {};
  const literal = (value: string, description?: string): SchemaNode => ({
    tsType: JSON.stringify(value).replaceAll('"', "'"),
    description,
  });
  if (properties.apiVersion) properties.apiVersion = literal(apiVersion, properties.apiVersion.description);
  if (properties.kind) properties.kind = literal(kind, properties.kind.description);
  if (properties.metadata) {
    properties.metadata = { tsType: 'V1ObjectMeta', description: 'Standard object metadata.' };
    // Every object the controller reads or applies has metadata (a name at least).
    root.required = [...new Set([...(root.required ?? []), 'metadata'])];
  }
  for (const [name, suffix] of [
    ['spec', 'Spec'],
    ['status', 'Status'],
  ] as const) {
    if (properties[name]) properties[name].title ??= `${kind}${suffix}`;
  }
  return { ...root, title: kind };
}

/** Rewrites what the generator gets wrong or too loose, bottom-up. */
function prepareNode(node: SchemaNode): SchemaNode {
  const description = jsdocText(node);
  if (isIntOrString(node)) {
    // Typed from the CRD marker, not from the generator's reading of anyOf (it does not know the marker).
    return { tsType: node.nullable ? 'number | string | null' : 'number | string', description, title: node.title };
  }
  if (description !== undefined) node.description = description;
  if (node.properties) {
    for (const [name, property] of Object.entries(node.properties)) node.properties[name] = prepareNode(property);
  }
  if (node.additionalProperties) node.additionalProperties = prepareNode(node.additionalProperties);
  if (node.items) node.items = prepareNode(node.items);
  if (node['x-kubernetes-preserve-unknown-fields'] === true && !node.properties && !node.additionalProperties) {
    // Any fields, kept as they are: say so, rather than the generator's strict `{}`.
    return { ...node, additionalProperties: { tsType: 'unknown' } };
  }
  return node;
}

/** The node's description as JSDoc text: with its default, and safe inside a comment. */
function jsdocText(node: SchemaNode): string | undefined {
  // Optional in the type (a client may omit it), but the reader should know what the server fills in.
  const text =
    node.default === undefined
      ? node.description
      : `${node.description ?? ''}\n\n@default ${JSON.stringify(node.default)}`.trim();
  // The generator copies descriptions into JSDoc as they are: a `*/` would end the comment.
  return text?.replaceAll('*/', '*\\/');
}

/**
 * Moves every titled node into `defs` and leaves a `$ref` in its place. Two nodes that share a title
 * must be the same schema: one name, one type.
 */
function hoist(node: SchemaNode, defs: Record<string, JSONSchema>, where: string): JSONSchema {
  for (const [name, child] of Object.entries(node.properties ?? {}))
    node.properties![name] = hoist(child, defs, `${where}.${name}`) as SchemaNode;
  if (node.additionalProperties)
    node.additionalProperties = hoist(node.additionalProperties, defs, `${where}.*`) as SchemaNode;
  if (node.items) node.items = hoist(node.items, defs, `${where}[]`) as SchemaNode;
  if (node.title === undefined) return node as JSONSchema;
  const existing = defs[node.title];
  if (existing && !jsonEqual(existing, node)) {
    throw new Error(
      `type name "${node.title}" (the "title" at ${where}) names two different schemas: give one another title or make them identical`,
    );
  }
  defs[node.title] = node as JSONSchema;
  return { $ref: `#/$defs/${node.title}` };
}

/** Per kind, what a client needs to call the API. */
function apiConstants(kinds: readonly KindSchema[]): string {
  return kinds
    .map(({ crd }) =>
      [
        `/** API coordinates of ${crd.kind}, for calls to the Kubernetes API. */`,
        `export const ${crd.kind}Resource = {`,
        `  group: '${crd.group}',`,
        `  version: '${crd.version}',`,
        `  apiVersion: '${crd.group}/${crd.version}',`,
        `  kind: '${crd.kind}',`,
        `  plural: '${crd.plural}',`,
        `} as const;`,
      ].join('\n'),
    )
    .join('\n\n');
}

/** The TypeScript module for all kinds, headed by `header` (a line comment, without the slashes). */
export async function generateTypes(kinds: readonly KindSchema[], header: string): Promise<string> {
  const declarations = await compile(typescriptSchema(kinds), unionName, {
    additionalProperties: false,
    bannerComment: '',
    declareExternallyReferenced: true,
    // minItems/maxItems would otherwise become unions of tuples.
    ignoreMinAndMaxItems: true,
    unknownAny: true,
    unreachableDefinitions: false,
    $refOptions: { resolve: { external: false } },
    style: { singleQuote: true, printWidth: 120 },
  });
  return [
    `// ${header}`,
    '',
    "import type { V1ObjectMeta } from '@kubernetes/client-node';",
    '',
    declarations.trim(),
    '',
    apiConstants(kinds),
    '',
  ].join('\n');
}
