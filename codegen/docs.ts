// The API reference (docs/api.md), from the schemas' descriptions and constraints.
import { isIntOrString, type KindSchema, type SchemaNode, type ValidationRule } from './schema.ts';

/** Standard fields every object has; `kubectl explain` documents them, so the reference skips them. */
const standardFields = new Set(['apiVersion', 'kind', 'metadata']);

interface FieldRow {
  path: string;
  node: SchemaNode;
  required: boolean;
}

interface RuleRow {
  path: string;
  rule: ValidationRule;
}

/** Every field below `node`, depth first, in schema order. */
function fieldRows(node: SchemaNode, path: string): FieldRow[] {
  const rows: FieldRow[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const childPath = path ? `${path}.${name}` : name;
    rows.push({ path: childPath, node: child, required: node.required?.includes(name) ?? false });
    rows.push(...fieldRows(child, childPath));
  }
  if (node.additionalProperties) rows.push(...fieldRows(node.additionalProperties, `${path}.*`));
  if (node.items) rows.push(...fieldRows(node.items, `${path}[]`));
  return rows;
}

function ruleRows(node: SchemaNode, path: string): RuleRow[] {
  const own = (node['x-kubernetes-validations'] ?? []).map((rule) => ({ path, rule }));
  const children = Object.entries(node.properties ?? {}).flatMap(([name, child]) =>
    ruleRows(child, path ? `${path}.${name}` : name),
  );
  const nested = [
    ...(node.additionalProperties ? ruleRows(node.additionalProperties, `${path}.*`) : []),
    ...(node.items ? ruleRows(node.items, `${path}[]`) : []),
  ];
  return [...own, ...children, ...nested];
}

export function typeName(node: SchemaNode): string {
  const nullable = node.nullable ? ', nullable' : '';
  if (isIntOrString(node)) return `int-or-string${nullable}`;
  if (node.type === 'array' && node.items) return `[]${typeName(node.items)}${nullable}`;
  if (node.type === 'object' && node.additionalProperties)
    return `map[string]${typeName(node.additionalProperties)}${nullable}`;
  return `${node.type}${node.format ? ` (${node.format})` : ''}${nullable}`;
}

export function constraints(node: SchemaNode): string[] {
  const found: string[] = [];
  if (node.enum) found.push(`one of ${node.enum.map((v) => code(String(v))).join(', ')}`);
  if (node.pattern !== undefined) found.push(`pattern ${code(node.pattern)}`);
  const bound = (label: string, value: number | undefined, exclusive?: boolean) => {
    if (value !== undefined) found.push(`${label}${exclusive ? ' (exclusive)' : ''} ${value}`);
  };
  bound('minimum', node.minimum, node.exclusiveMinimum);
  bound('maximum', node.maximum, node.exclusiveMaximum);
  bound('multiple of', node.multipleOf);
  bound('min length', node.minLength);
  bound('max length', node.maxLength);
  bound('min items', node.minItems);
  bound('max items', node.maxItems);
  bound('min properties', node.minProperties);
  bound('max properties', node.maxProperties);
  const listType = node['x-kubernetes-list-type'];
  if (listType === 'map')
    found.push(`list-map keyed by ${(node['x-kubernetes-list-map-keys'] ?? []).map(code).join(', ')}`);
  else if (listType) found.push(`list type ${listType}`);
  if (node['x-kubernetes-map-type']) found.push(`map type ${node['x-kubernetes-map-type']}`);
  if (node['x-kubernetes-preserve-unknown-fields']) found.push('unknown fields kept');
  return found;
}

/** A Markdown code span that survives any backticks and a table's `|`. */
export function code(text: string): string {
  const longestRun = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longestRun + 1);
  const padding = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${padding}${text.replaceAll('|', '\\|')}${padding}${fence}`;
}

/**
 * Prose for a table cell: `<` and `>` outside code spans become entities (so `<name>` is not read
 * as an HTML tag), `|` is escaped, line breaks become `<br>`.
 */
export function cell(text: string): string {
  return text
    .split(/(`+[^`]*?`+)/)
    .map((part, i) =>
      i % 2 === 1 ? part : part.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;'),
    )
    .join('')
    .replaceAll('|', '\\|')
    .replace(/\r?\n/g, '<br>');
}

function table(headers: string[], rows: string[][]): string {
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map(() => '---').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

function kindSection(kind: KindSchema): string {
  const { crd, schema } = kind;
  const sections = Object.entries(schema.properties ?? {}).filter(([name]) => !standardFields.has(name));
  const rules = ruleRows(schema, '');
  return [
    `## ${crd.kind}`,
    cell(schema.description ?? ''),
    table(
      ['', ''],
      [
        ['apiVersion', code(`${crd.group}/${crd.version}`)],
        ['kind', code(crd.kind)],
        ['resource', code(crd.plural)],
        ['short names', crd.shortNames.map(code).join(', ')],
        ['categories', crd.categories.map(code).join(', ')],
        ['scope', 'Namespaced, with the `status` subresource'],
      ],
    ),
    `### Printer columns`,
    'Shown by `kubectl get`; the ones with a priority above 0 only with `-o wide`.',
    table(
      ['Column', 'Type', 'JSON path', 'Priority', 'Description'],
      crd.printerColumns.map((c) => [
        cell(c.name),
        c.type,
        code(c.jsonPath),
        String(c.priority ?? 0),
        cell(c.description ?? ''),
      ]),
    ),
    ...sections.map(([name, node]) => fieldsSection(name, node, schema.required?.includes(name) ?? false)),
    `### Validation rules`,
    rules.length === 0
      ? 'None beyond the field constraints above.'
      : [
          'CEL rules (`x-kubernetes-validations`) that the API server checks on every write; the message is what `kubectl` shows when one fails.',
          table(
            ['Field', 'Rule', 'Message'],
            rules.map(({ path, rule }) => [
              path ? code(path) : '(object)',
              code(rule.rule),
              rule.message ? cell(rule.message) : `computed: ${code(rule.messageExpression ?? '')}`,
            ]),
          ),
        ].join('\n\n'),
  ].join('\n\n');
}

function fieldsSection(name: string, node: SchemaNode, required: boolean): string {
  const rows = [{ path: name, node, required }, ...fieldRows(node, name)];
  return [
    `### ${name}`,
    table(
      ['Field', 'Type', 'Default', 'Constraints', 'Required', 'Description'],
      rows.map((row) => [
        code(row.path),
        code(typeName(row.node)),
        row.node.default === undefined ? '' : code(JSON.stringify(row.node.default)),
        constraints(row.node).join('<br>'),
        row.required ? 'yes' : '',
        cell(row.node.description ?? ''),
      ]),
    ),
  ].join('\n\n');
}

/** The whole reference: one section per kind, in the order given. */
export function apiReference(kinds: readonly KindSchema[], header: string): string {
  const groups = [...new Set(kinds.map(({ crd }) => `${crd.group}/${crd.version}`))];
  return (
    [
      `<!-- ${header} -->`,
      '# API reference',
      `Kinds of ${groups.map(code).join(', ')}. Every kind is namespaced, has a \`status\` subresource (only the controller writes it) and belongs to the ${[...new Set(kinds.flatMap(({ crd }) => crd.categories))].map(code).join(', ')} category: \`kubectl get ${kinds[0]?.crd.categories[0] ?? ''}\` lists them all.`,
      kinds
        .map(({ crd }) => `- [${crd.kind}](#${crd.kind.toLowerCase()}) (${crd.shortNames.map(code).join(', ')})`)
        .join('\n'),
      ...kinds.map(kindSection),
    ].join('\n\n') + '\n'
  );
}
