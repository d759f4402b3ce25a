// Structural lint: the schema files must be in the subset of JSON Schema that a CRD's
// openAPIV3Schema accepts (a "structural schema"), so that every generator can trust their shape and
// the API server never rejects the CRD at install time.
import { crdInfoKey, isPlainObject, jsonPointer } from './schema.ts';

export interface LintIssue {
  /** JSON Pointer of the offending node in the schema file. */
  pointer: string;
  message: string;
}

type Path = readonly (string | number)[];

export function formatIssue(file: string, issue: LintIssue): string {
  return `${file}: ${issue.pointer || '/'}: ${issue.message}`;
}

const scalarTypes = new Set(['string', 'integer', 'number', 'boolean']);
const nodeTypes = new Set([...scalarTypes, 'object', 'array']);

const nodeKeywords = new Set([
  'type',
  'title',
  'description',
  'format',
  'default',
  'enum',
  'example',
  'externalDocs',
  'nullable',
  'pattern',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'required',
  'properties',
  'additionalProperties',
  'items',
  'anyOf',
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
]);

/** Keywords of JSON Schema that a CRD rejects (or codegen cannot type), with what to do instead. */
const rejectedKeywords: Record<string, string> = {
  $ref: '"$ref" is not allowed in a CRD schema: inline the schema (a "title" names a shared type)',
  $defs: '"$defs" is not allowed in a CRD schema: inline the schema',
  definitions: '"definitions" is not allowed in a CRD schema: inline the schema',
  allOf: '"allOf" is not supported: express the constraint as an x-kubernetes-validations rule',
  oneOf: '"oneOf" is not supported: express the constraint as an x-kubernetes-validations rule',
  not: '"not" is not supported: express the constraint as an x-kubernetes-validations rule',
  uniqueItems: '"uniqueItems" is not accepted in a CRD: use "x-kubernetes-list-type": "set"',
  patternProperties:
    '"patternProperties" is not accepted in a CRD: use "additionalProperties" with a CEL rule on the keys',
};

const numberKeywords = ['minimum', 'maximum', 'multipleOf'] as const;
const countKeywords = ['minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties', 'maxProperties'] as const;
const ruleKeys = new Set(['rule', 'message', 'messageExpression', 'reason', 'fieldPath', 'optionalOldSelf']);
const ruleReasons = new Set(['FieldValueInvalid', 'FieldValueForbidden', 'FieldValueRequired', 'FieldValueDuplicate']);

/** All the problems of one schema file (parsed JSON); empty when it is fine. */
export function lintSchema(document: unknown): LintIssue[] {
  const issues: LintIssue[] = [];
  const report = (path: Path, message: string) => issues.push({ pointer: jsonPointer(path), message });
  if (!isPlainObject(document)) {
    report([], 'the schema must be a JSON object');
    return issues;
  }
  const { $schema, $id, [crdInfoKey]: crdInfo, ...schema } = document;
  if ($schema !== undefined && typeof $schema !== 'string') report(['$schema'], '"$schema" must be a string');
  if ($id !== undefined && typeof $id !== 'string') report(['$id'], '"$id" must be a string');
  lintCrdInfo(crdInfo, schema, report);
  if (schema.type !== 'object') report(['type'], 'the root schema must have "type": "object"');
  const { metadata, ...properties } = isPlainObject(schema.properties) ? schema.properties : {};
  lintRootMetadata(metadata, report);
  lintNode({ ...schema, properties }, [], report);
  return issues;
}

/**
 * The API server defines the root `metadata` itself: a CRD may only say `{"type": "object"}` there
 * (a description, for one, makes it reject the whole CRD).
 */
function lintRootMetadata(metadata: unknown, report: Report): void {
  if (metadata === undefined) return;
  if (!isPlainObject(metadata) || Object.keys(metadata).length !== 1 || metadata.type !== 'object') {
    report(
      ['properties', 'metadata'],
      'the root "metadata" must be exactly {"type": "object"}: the API server defines it and rejects anything else',
    );
  }
}

type Report = (path: Path, message: string) => void;

function lintNode(node: unknown, path: Path, report: Report): void {
  if (!isPlainObject(node)) {
    report(path, 'must be a schema object');
    return;
  }
  for (const keyword of Object.keys(node)) {
    if (nodeKeywords.has(keyword)) continue;
    report([...path, keyword], rejectedKeywords[keyword] ?? `keyword "${keyword}" is not accepted in a CRD schema`);
  }
  if (node['x-kubernetes-int-or-string'] !== undefined || node.anyOf !== undefined) lintIntOrString(node, path, report);
  else if (node.type === undefined) report(path, 'missing "type"');
  else if (typeof node.type !== 'string' || !nodeTypes.has(node.type))
    report([...path, 'type'], `"type" must be one of ${[...nodeTypes].join(', ')}`);
  lintAnnotations(node, path, report);
  lintBounds(node, path, report);
  lintObject(node, path, report);
  lintArray(node, path, report);
  lintValidations(node['x-kubernetes-validations'], [...path, 'x-kubernetes-validations'], report);
}

/** The CRD spelling: `x-kubernetes-int-or-string: true` with `anyOf: [{type: integer}, {type: string}]`, no `type`. */
function lintIntOrString(node: Record<string, unknown>, path: Path, report: Report): void {
  if (node['x-kubernetes-int-or-string'] !== true) {
    report(path, '"anyOf" is only supported for int-or-string, with "x-kubernetes-int-or-string": true');
    return;
  }
  const anyOf = node.anyOf;
  const spelledRight =
    Array.isArray(anyOf) &&
    anyOf.length === 2 &&
    anyOf.every(
      (branch, i) =>
        isPlainObject(branch) && Object.keys(branch).length === 1 && branch.type === ['integer', 'string'][i],
    );
  if (!spelledRight)
    report(
      [...path, 'anyOf'],
      'an int-or-string node needs exactly "anyOf": [{"type": "integer"}, {"type": "string"}]',
    );
  if (node.type !== undefined)
    report([...path, 'type'], 'an int-or-string node must not have "type" (the anyOf says it)');
}

function lintAnnotations(node: Record<string, unknown>, path: Path, report: Report): void {
  for (const keyword of ['title', 'description', 'format', 'pattern'] as const) {
    if (node[keyword] !== undefined && typeof node[keyword] !== 'string')
      report([...path, keyword], `"${keyword}" must be a string`);
  }
  if (typeof node.pattern === 'string') {
    try {
      new RegExp(node.pattern);
    } catch (err) {
      report([...path, 'pattern'], `"pattern" is not a valid regular expression: ${(err as Error).message}`);
    }
  }
  if (node.enum !== undefined && (!Array.isArray(node.enum) || node.enum.length === 0))
    report([...path, 'enum'], '"enum" must be a non-empty array');
  for (const keyword of [
    'nullable',
    'x-kubernetes-preserve-unknown-fields',
    'x-kubernetes-embedded-resource',
  ] as const) {
    if (node[keyword] !== undefined && typeof node[keyword] !== 'boolean')
      report([...path, keyword], `"${keyword}" must be a boolean`);
  }
  if (node.default !== undefined && !defaultMatchesType(node))
    report([...path, 'default'], `the default does not match the node's type`);
}

function defaultMatchesType(node: Record<string, unknown>): boolean {
  const value = node.default;
  if (node['x-kubernetes-int-or-string'] === true) return Number.isInteger(value) || typeof value === 'string';
  switch (node.type) {
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isPlainObject(value);
    default:
      return true;
  }
}

function lintBounds(node: Record<string, unknown>, path: Path, report: Report): void {
  for (const keyword of numberKeywords) {
    if (node[keyword] !== undefined && typeof node[keyword] !== 'number')
      report([...path, keyword], `"${keyword}" must be a number`);
  }
  for (const keyword of countKeywords) {
    const value = node[keyword];
    if (value !== undefined && !(Number.isInteger(value) && (value as number) >= 0))
      report([...path, keyword], `"${keyword}" must be an integer >= 0`);
  }
  for (const keyword of ['exclusiveMinimum', 'exclusiveMaximum'] as const) {
    if (node[keyword] !== undefined && typeof node[keyword] !== 'boolean') {
      report(
        [...path, keyword],
        `"${keyword}" must be a boolean in a CRD (OpenAPI v3.0), beside "${keyword === 'exclusiveMinimum' ? 'minimum' : 'maximum'}"`,
      );
    }
  }
}

function lintObject(node: Record<string, unknown>, path: Path, report: Report): void {
  const { properties, additionalProperties, required } = node;
  if (properties !== undefined && additionalProperties !== undefined) {
    report(path, '"properties" and "additionalProperties" are mutually exclusive in a CRD');
  }
  if ((properties !== undefined || additionalProperties !== undefined) && node.type !== 'object') {
    report(path, '"properties" and "additionalProperties" need "type": "object"');
  }
  if (properties !== undefined) {
    if (!isPlainObject(properties)) report([...path, 'properties'], '"properties" must be an object');
    else lintProperties(properties, [...path, 'properties'], report);
  }
  if (additionalProperties !== undefined) {
    if (typeof additionalProperties === 'boolean') {
      report(
        [...path, 'additionalProperties'],
        'a boolean "additionalProperties" is not accepted: unknown fields are pruned; use "x-kubernetes-preserve-unknown-fields": true to keep them',
      );
    } else lintNode(additionalProperties, [...path, 'additionalProperties'], report);
  }
  if (required !== undefined) lintRequired(required, properties, [...path, 'required'], report);
  const mapType = node['x-kubernetes-map-type'];
  if (mapType !== undefined && mapType !== 'atomic' && mapType !== 'granular')
    report([...path, 'x-kubernetes-map-type'], '"x-kubernetes-map-type" must be "atomic" or "granular"');
}

function lintProperties(properties: Record<string, unknown>, path: Path, report: Report): void {
  for (const [name, property] of Object.entries(properties)) {
    if (isPlainObject(property) && typeof property.description !== 'string')
      report([...path, name], 'missing "description" (kubectl explain shows it)');
    lintNode(property, [...path, name], report);
  }
}

function lintRequired(required: unknown, properties: unknown, path: Path, report: Report): void {
  if (!Array.isArray(required) || !required.every((name) => typeof name === 'string')) {
    report(path, '"required" must be an array of property names');
    return;
  }
  for (const name of required) {
    if (!isPlainObject(properties) || !Object.hasOwn(properties, name))
      report(path, `required property "${name}" is not in "properties"`);
  }
}

function lintArray(node: Record<string, unknown>, path: Path, report: Report): void {
  if (node.type === 'array') {
    if (node.items === undefined) report(path, 'an array needs "items"');
    else if (Array.isArray(node.items))
      report([...path, 'items'], '"items" must be one schema (tuples are not accepted in a CRD)');
    else lintNode(node.items, [...path, 'items'], report);
  } else if (node.items !== undefined) {
    report(path, '"items" needs "type": "array"');
  }
  lintListType(node, path, report);
}

function lintListType(node: Record<string, unknown>, path: Path, report: Report): void {
  const listType = node['x-kubernetes-list-type'];
  const keys = node['x-kubernetes-list-map-keys'];
  if (listType !== undefined && !['atomic', 'set', 'map'].includes(listType as string)) {
    report([...path, 'x-kubernetes-list-type'], '"x-kubernetes-list-type" must be "atomic", "set" or "map"');
  }
  if (listType !== undefined && node.type !== 'array')
    report([...path, 'x-kubernetes-list-type'], '"x-kubernetes-list-type" needs "type": "array"');
  if (keys !== undefined && listType !== 'map')
    report(
      [...path, 'x-kubernetes-list-map-keys'],
      '"x-kubernetes-list-map-keys" needs "x-kubernetes-list-type": "map"',
    );
  if (listType !== 'map') return;
  const items = isPlainObject(node.items) ? node.items : {};
  const itemProperties = isPlainObject(items.properties) ? items.properties : {};
  const itemRequired = Array.isArray(items.required) ? items.required : [];
  if (items.type !== 'object') report([...path, 'items'], 'the items of a list-map must have "type": "object"');
  if (!Array.isArray(keys) || keys.length === 0) {
    report(path, 'a list-map needs a non-empty "x-kubernetes-list-map-keys"');
    return;
  }
  for (const key of keys as string[]) {
    const keySchema = itemProperties[key];
    if (!isPlainObject(keySchema))
      report([...path, 'x-kubernetes-list-map-keys'], `list-map key "${key}" is not a property of the items`);
    else if (!scalarTypes.has(keySchema.type as string))
      report([...path, 'x-kubernetes-list-map-keys'], `list-map key "${key}" must be a scalar`);
    else if (!itemRequired.includes(key) && keySchema.default === undefined)
      report([...path, 'x-kubernetes-list-map-keys'], `list-map key "${key}" must be required or have a default`);
  }
}

function lintValidations(rules: unknown, path: Path, report: Report): void {
  if (rules === undefined) return;
  if (!Array.isArray(rules)) {
    report(path, '"x-kubernetes-validations" must be an array of rules');
    return;
  }
  rules.forEach((rule, i) => {
    if (!isPlainObject(rule)) {
      report([...path, i], 'a validation rule must be an object');
      return;
    }
    if (typeof rule.rule !== 'string' || rule.rule.trim() === '')
      report([...path, i], 'a validation rule needs a CEL "rule"');
    if (rule.message === undefined && rule.messageExpression === undefined)
      report([...path, i], 'a validation rule needs a "message" that tells the user what to fix');
    for (const key of Object.keys(rule)) {
      if (!ruleKeys.has(key)) report([...path, i, key], `"${key}" is not a field of a validation rule`);
    }
    if (rule.reason !== undefined && !ruleReasons.has(rule.reason as string))
      report([...path, i, 'reason'], `"reason" must be one of ${[...ruleReasons].join(', ')}`);
  });
}

const crdInfoKeys = ['group', 'version', 'kind', 'plural', 'singular', 'shortNames', 'categories', 'printerColumns'];
const columnTypes = new Set(['integer', 'number', 'string', 'boolean', 'date']);
const columnKeys = new Set(['name', 'type', 'jsonPath', 'description', 'format', 'priority']);

function lintCrdInfo(info: unknown, schema: Record<string, unknown>, report: Report): void {
  const path = [crdInfoKey];
  if (!isPlainObject(info)) {
    report(
      path,
      `missing "${crdInfoKey}" (group, version, kind, plural, singular, shortNames, categories, printerColumns)`,
    );
    return;
  }
  for (const key of Object.keys(info)) if (!crdInfoKeys.includes(key)) report([...path, key], `unknown key "${key}"`);
  for (const key of ['group', 'version', 'kind', 'plural', 'singular']) {
    if (typeof info[key] !== 'string' || info[key] === '')
      report([...path, key], `"${key}" must be a non-empty string`);
  }
  for (const key of ['plural', 'singular']) {
    if (typeof info[key] === 'string' && !/^[a-z][a-z0-9]*$/.test(info[key]))
      report([...path, key], `"${key}" must be lowercase letters and digits`);
  }
  if (typeof info.kind === 'string' && !/^[A-Z][A-Za-z0-9]*$/.test(info.kind))
    report([...path, 'kind'], '"kind" must be CamelCase');
  for (const key of ['shortNames', 'categories']) {
    const names = info[key];
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string' && /^[a-z][a-z0-9]*$/.test(n))) {
      report([...path, key], `"${key}" must be an array of lowercase names`);
    }
  }
  if (!Array.isArray(info.printerColumns)) report([...path, 'printerColumns'], '"printerColumns" must be an array');
  else
    info.printerColumns.forEach((column, i) =>
      lintPrinterColumn(column, schema, [...path, 'printerColumns', i], report),
    );
}

function lintPrinterColumn(column: unknown, schema: Record<string, unknown>, path: Path, report: Report): void {
  if (!isPlainObject(column)) {
    report(path, 'a printer column must be an object');
    return;
  }
  for (const key of Object.keys(column)) if (!columnKeys.has(key)) report([...path, key], `unknown key "${key}"`);
  if (typeof column.name !== 'string' || column.name === '') report(path, 'a printer column needs a "name"');
  if (!columnTypes.has(column.type as string))
    report([...path, 'type'], `"type" must be one of ${[...columnTypes].join(', ')}`);
  if (column.priority !== undefined && !(Number.isInteger(column.priority) && (column.priority as number) >= 0))
    report([...path, 'priority'], '"priority" must be an integer >= 0');
  if (typeof column.jsonPath !== 'string' || !column.jsonPath.startsWith('.'))
    report([...path, 'jsonPath'], '"jsonPath" must be a simple JSON path that starts with "."');
  else if (!column.jsonPath.startsWith('.metadata.') && !jsonPathExists(schema, column.jsonPath)) {
    report([...path, 'jsonPath'], `"${column.jsonPath}" is not a field of the schema`);
  }
}

/** Whether a simple JSON path (`.a.b[0].c`, `.a[*].b`) names a field of the schema. */
function jsonPathExists(schema: Record<string, unknown>, jsonPath: string): boolean {
  let node: unknown = schema;
  for (const segment of jsonPath.slice(1).split('.')) {
    const [, name, indexes] = /^([^[\]]+)((?:\[(?:\d+|\*)\])*)$/.exec(segment) ?? [];
    if (name === undefined || !isPlainObject(node) || !isPlainObject(node.properties)) return false;
    node = node.properties[name];
    for (let i = 0; i < (indexes.match(/\[/g)?.length ?? 0); i++) node = isPlainObject(node) ? node.items : undefined;
  }
  return isPlainObject(node);
}
