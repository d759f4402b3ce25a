// The shape of schemas/<kind>.schema.json and the small helpers every generator shares.

/** One node of a CRD-structural JSON Schema (the keywords codegen reads; lint.ts checks the rest). */
export interface SchemaNode {
  type?: string;
  title?: string;
  description?: string;
  format?: string;
  default?: unknown;
  enum?: unknown[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  nullable?: boolean;
  required?: string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: ValidationRule[];
  [keyword: string]: unknown;
}

export interface ValidationRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  reason?: string;
  fieldPath?: string;
  optionalOldSelf?: boolean;
}

export interface PrinterColumn {
  name: string;
  type: 'integer' | 'number' | 'string' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  format?: string;
  priority?: number;
}

/** The `x-ml-operator-crd` object: what a CRD needs beyond the schema. */
export interface CrdInfo {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  categories: string[];
  printerColumns: PrinterColumn[];
}

/** A linted schema file: where it came from, its CRD information and its openAPIV3Schema. */
export interface KindSchema {
  file: string;
  crd: CrdInfo;
  schema: SchemaNode;
}

export const crdInfoKey = 'x-ml-operator-crd';

/** Keys of a schema file that are not part of the CRD's openAPIV3Schema. */
const fileOnlyKeys = new Set(['$schema', '$id', crdInfoKey]);

/** Splits a linted schema document into its CRD information and its openAPIV3Schema. */
export function toKindSchema(file: string, document: Record<string, unknown>): KindSchema {
  const schema = Object.fromEntries(Object.entries(document).filter(([key]) => !fileOnlyKeys.has(key)));
  return { file, crd: document[crdInfoKey] as CrdInfo, schema: schema };
}

export function isIntOrString(node: SchemaNode): boolean {
  return node['x-kubernetes-int-or-string'] === true;
}

/** A JSON Pointer (RFC 6901) from path segments. */
export function jsonPointer(segments: readonly (string | number)[]): string {
  return segments.map((s) => `/${String(s).replaceAll('~', '~0').replaceAll('/', '~1')}`).join('');
}

/** A copy of a JSON value (schemas are plain JSON, so structuredClone is exact). */
export function clone<T>(value: T): T {
  return structuredClone(value);
}

/** Deep equality of two JSON values, object key order ignored. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
