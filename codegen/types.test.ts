import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadKinds } from './outputs.ts';
import { generateTypes, typescriptSchema } from './types.ts';
import type { KindSchema } from './schema.ts';

const root = join(import.meta.dirname, '..');
const kinds = loadKinds(
  readdirSync(join(root, 'schemas')).map((name) => ({
    path: `schemas/${name}`,
    text: readFileSync(join(root, 'schemas', name), 'utf8'),
  })),
);

describe('generateTypes for the repository schemas', async () => {
  const source = await generateTypes(kinds, 'header');

  it('is strict: no open index signatures, no tuples from maxItems', () => {
    expect(source).not.toMatch(/\[k: string\]: unknown/);
    expect(source).not.toMatch(/\[\] \|/);
  });

  it('exports each kind with its Spec and Status, and the named nested types once', () => {
    for (const { crd } of kinds) {
      expect(source).toContain(`export interface ${crd.kind} {`);
      expect(source).toContain(`export interface ${crd.kind}Spec {`);
      expect(source).toContain(`export interface ${crd.kind}Status {`);
      expect(source).toContain(`export const ${crd.kind}Resource = {`);
    }
    for (const name of [
      'MachineLearningEndpointConfigVariant',
      'TrafficEntry',
      'EnvVar',
      'MachineLearningEndpointRollout',
    ]) {
      expect(source).toContain(`export interface ${name} {`);
    }
    expect(source.match(/export interface Condition \{/g)).toHaveLength(1);
  });

  it('types metadata as V1ObjectMeta, int-or-string as number | string, and keeps defaulted fields optional', () => {
    expect(source).toContain("import type { V1ObjectMeta } from '@kubernetes/client-node';");
    expect(source).toContain('  metadata: V1ObjectMeta;');
    expect(source).toContain('  cpus?: number | string;');
    expect(source).toContain('  port?: number;');
    expect(source).toContain("  apiVersion?: 'ml-operator.dev/v1alpha1';");
  });
});

describe('typescriptSchema', () => {
  it('refuses one title for two different schemas', () => {
    const [kind] = kinds;
    const clash: KindSchema = structuredClone(kind);
    clash.crd.kind = 'Other';
    const conditions = clash.schema.properties!.status.properties!.conditions.items!;
    conditions.properties!.extra = { description: 'Extra.', type: 'string' };
    expect(() => typescriptSchema([kind, clash])).toThrow(
      /type name "Condition" \(the "title" at Other\.status\.conditions\[\]\) names two different schemas/,
    );
  });
});
