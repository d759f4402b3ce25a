import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIssue, lintSchema } from './lint.ts';

/** A small schema that passes; each case below breaks one thing. */
function validSchema(): Record<string, any> {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://example.dev/x.json',
    'x-ml-operator-crd': {
      group: 'example.dev',
      version: 'v1',
      kind: 'Thing',
      plural: 'things',
      singular: 'thing',
      shortNames: ['th'],
      categories: ['all'],
      printerColumns: [
        { name: 'Port', type: 'integer', jsonPath: '.spec.port' },
        { name: 'First', type: 'string', jsonPath: '.spec.items[0].name' },
        { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
      ],
    },
    type: 'object',
    properties: {
      metadata: { type: 'object' },
      spec: {
        description: 'Spec.',
        type: 'object',
        required: ['port'],
        properties: {
          port: { description: 'Port.', type: 'integer', minimum: 1, default: 80 },
          size: {
            description: 'Size.',
            anyOf: [{ type: 'integer' }, { type: 'string' }],
            'x-kubernetes-int-or-string': true,
          },
          labels: { description: 'Labels.', type: 'object', additionalProperties: { type: 'string' } },
          items: {
            description: 'Items.',
            type: 'array',
            'x-kubernetes-list-type': 'map',
            'x-kubernetes-list-map-keys': ['name'],
            items: {
              type: 'object',
              required: ['name'],
              properties: { name: { description: 'Name.', type: 'string' } },
            },
          },
        },
        'x-kubernetes-validations': [{ rule: 'self.port != 1', message: 'port 1 is reserved' }],
      },
    },
  };
}

function messages(document: unknown): string[] {
  return lintSchema(document).map((issue) => formatIssue('schemas/x.schema.json', issue));
}

describe('lintSchema', () => {
  it('accepts a structural schema', () => {
    expect(messages(validSchema())).toEqual([]);
  });

  it('accepts the repository schemas and the test fixture', () => {
    const root = join(import.meta.dirname, '..');
    const files = [
      ...readdirSync(join(root, 'schemas')).map((name) => join(root, 'schemas', name)),
      join(import.meta.dirname, 'testdata', 'widget.schema.json'),
    ];
    for (const file of files) expect(lintSchema(JSON.parse(readFileSync(file, 'utf8'))), file).toEqual([]);
  });

  it('names the file and JSON path of a node without a type', () => {
    const schema = validSchema();
    delete schema.properties.spec.properties.port.type;
    expect(messages(schema)).toEqual(['schemas/x.schema.json: /properties/spec/properties/port: missing "type"']);
  });

  it('rejects $ref', () => {
    const schema = validSchema();
    schema.properties.spec.properties.other = { description: 'Other.', $ref: '#/$defs/Other' };
    expect(messages(schema)).toContain(
      'schemas/x.schema.json: /properties/spec/properties/other/$ref: "$ref" is not allowed in a CRD schema: inline the schema (a "title" names a shared type)',
    );
  });

  it('rejects properties beside additionalProperties', () => {
    const schema = validSchema();
    schema.properties.spec.properties.labels.properties = { a: { description: 'A.', type: 'string' } };
    expect(messages(schema)).toContain(
      'schemas/x.schema.json: /properties/spec/properties/labels: "properties" and "additionalProperties" are mutually exclusive in a CRD',
    );
  });

  it('rejects a boolean additionalProperties', () => {
    const schema = validSchema();
    schema.properties.spec.properties.labels.additionalProperties = false;
    expect(messages(schema)).toEqual([
      expect.stringMatching(
        /^schemas\/x\.schema\.json: \/properties\/spec\/properties\/labels\/additionalProperties: a boolean "additionalProperties"/,
      ),
    ]);
  });

  it('requires a description on every property', () => {
    const schema = validSchema();
    delete schema.properties.spec.properties.items.items.properties.name.description;
    expect(messages(schema)).toEqual([
      'schemas/x.schema.json: /properties/spec/properties/items/items/properties/name: missing "description" (kubectl explain shows it)',
    ]);
  });

  it('rejects keywords a CRD does not accept', () => {
    const schema = validSchema();
    Object.assign(schema.properties.spec.properties.port, { examples: [80], const: 80 });
    schema.properties.spec.properties.items.uniqueItems = true;
    expect(messages(schema)).toEqual([
      'schemas/x.schema.json: /properties/spec/properties/port/examples: keyword "examples" is not accepted in a CRD schema',
      'schemas/x.schema.json: /properties/spec/properties/port/const: keyword "const" is not accepted in a CRD schema',
      'schemas/x.schema.json: /properties/spec/properties/items/uniqueItems: "uniqueItems" is not accepted in a CRD: use "x-kubernetes-list-type": "set"',
    ]);
  });

  it('rejects oneOf and a numeric exclusiveMinimum (JSON Schema 2020-12, not OpenAPI v3.0)', () => {
    const schema = validSchema();
    schema.properties.spec.oneOf = [{ required: ['port'] }, { required: ['size'] }];
    schema.properties.spec.properties.port.exclusiveMinimum = 0;
    expect(messages(schema)).toEqual([
      'schemas/x.schema.json: /properties/spec/oneOf: "oneOf" is not supported: express the constraint as an x-kubernetes-validations rule',
      'schemas/x.schema.json: /properties/spec/properties/port/exclusiveMinimum: "exclusiveMinimum" must be a boolean in a CRD (OpenAPI v3.0), beside "minimum"',
    ]);
  });

  it('wants int-or-string spelled the CRD way', () => {
    const withType = validSchema();
    withType.properties.spec.properties.size.type = 'string';
    expect(messages(withType)).toEqual([
      'schemas/x.schema.json: /properties/spec/properties/size/type: an int-or-string node must not have "type" (the anyOf says it)',
    ]);

    const withoutMarker = validSchema();
    delete withoutMarker.properties.spec.properties.size['x-kubernetes-int-or-string'];
    expect(messages(withoutMarker)).toEqual([
      'schemas/x.schema.json: /properties/spec/properties/size: "anyOf" is only supported for int-or-string, with "x-kubernetes-int-or-string": true',
    ]);

    const wrongAnyOf = validSchema();
    wrongAnyOf.properties.spec.properties.size.anyOf = [{ type: 'string' }, { type: 'integer' }];
    expect(messages(wrongAnyOf)).toEqual([
      'schemas/x.schema.json: /properties/spec/properties/size/anyOf: an int-or-string node needs exactly "anyOf": [{"type": "integer"}, {"type": "string"}]',
    ]);
  });

  it('checks list-map keys, required names and defaults', () => {
    const schema = validSchema();
    schema.properties.spec.properties.items.items.required = [];
    schema.properties.spec.required = ['port', 'missing'];
    schema.properties.spec.properties.port.default = '80';
    expect(messages(schema)).toEqual([
      "schemas/x.schema.json: /properties/spec/properties/port/default: the default does not match the node's type",
      'schemas/x.schema.json: /properties/spec/properties/items/x-kubernetes-list-map-keys: list-map key "name" must be required or have a default',
      'schemas/x.schema.json: /properties/spec/required: required property "missing" is not in "properties"',
    ]);
  });

  it('wants a message on every CEL rule', () => {
    const schema = validSchema();
    schema.properties.spec['x-kubernetes-validations'] = [{ rule: 'self.port != 1', reason: 'Bad' }];
    expect(messages(schema)).toEqual([
      'schemas/x.schema.json: /properties/spec/x-kubernetes-validations/0: a validation rule needs a "message" that tells the user what to fix',
      'schemas/x.schema.json: /properties/spec/x-kubernetes-validations/0/reason: "reason" must be one of FieldValueInvalid, FieldValueForbidden, FieldValueRequired, FieldValueDuplicate',
    ]);
  });

  it('allows nothing but {"type": "object"} for the root metadata', () => {
    const schema = validSchema();
    schema.properties.metadata.description = 'Standard object metadata.';
    expect(messages(schema)).toEqual([
      expect.stringMatching(/^schemas\/x\.schema\.json: \/properties\/metadata: the root "metadata" must be exactly/),
    ]);
  });

  it('checks the CRD information and that printer columns point at fields', () => {
    const schema = validSchema();
    const crd = schema['x-ml-operator-crd'];
    crd.shortNames = ['TH'];
    crd.printerColumns.push(
      { name: 'Ready', type: 'string', jsonPath: '.status.ready' },
      { name: 'Bad', type: 'text', jsonPath: 'spec.port' },
    );
    expect(messages(schema)).toEqual([
      'schemas/x.schema.json: /x-ml-operator-crd/shortNames: "shortNames" must be an array of lowercase names',
      'schemas/x.schema.json: /x-ml-operator-crd/printerColumns/3/jsonPath: ".status.ready" is not a field of the schema',
      'schemas/x.schema.json: /x-ml-operator-crd/printerColumns/4/type: "type" must be one of integer, number, string, boolean, date',
      'schemas/x.schema.json: /x-ml-operator-crd/printerColumns/4/jsonPath: "jsonPath" must be a simple JSON path that starts with "."',
    ]);
  });

  it('wants the CRD information', () => {
    const schema = validSchema();
    delete schema['x-ml-operator-crd'];
    expect(messages(schema)).toEqual([
      'schemas/x.schema.json: /x-ml-operator-crd: missing "x-ml-operator-crd" (group, version, kind, plural, singular, shortNames, categories, printerColumns)',
    ]);
  });

  it('escapes JSON Pointer segments', () => {
    const schema = validSchema();
    schema.properties.spec.properties['a/b~c'] = { description: 'Odd name.' };
    expect(messages(schema)).toEqual(['schemas/x.schema.json: /properties/spec/properties/a~1b~0c: missing "type"']);
  });
});
