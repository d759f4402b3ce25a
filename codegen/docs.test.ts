import { describe, expect, it } from 'vitest';
import { cell, code, constraints, typeName } from './docs.ts';

describe('API reference helpers', () => {
  it('keeps table cells intact: pipes escaped, angle brackets outside code shown as text', () => {
    expect(cell('a | b <name> `x|<y>`\nnext')).toBe('a \\| b &lt;name&gt; `x\\|<y>`<br>next');
    expect(code('a`b|c')).toBe('``a`b\\|c``');
  });

  it('names types the Kubernetes way', () => {
    expect(typeName({ anyOf: [{ type: 'integer' }, { type: 'string' }], 'x-kubernetes-int-or-string': true })).toBe(
      'int-or-string',
    );
    expect(typeName({ type: 'array', items: { type: 'string' } })).toBe('[]string');
    expect(typeName({ type: 'object', additionalProperties: { type: 'string' } })).toBe('map[string]string');
    expect(typeName({ type: 'integer', format: 'int64', nullable: true })).toBe('integer (int64), nullable');
  });

  it('lists the constraints', () => {
    expect(constraints({ type: 'integer', minimum: 0, maximum: 10, exclusiveMaximum: true })).toEqual([
      'minimum 0',
      'maximum (exclusive) 10',
    ]);
    expect(
      constraints({
        type: 'array',
        maxItems: 3,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
      }),
    ).toEqual(['max items 3', 'list-map keyed by `name`']);
    expect(constraints({ type: 'string', enum: ['a', 'b'], pattern: '^(a|b)$' })).toEqual([
      'one of `a`, `b`',
      'pattern `^(a\\|b)$`',
    ]);
  });
});
