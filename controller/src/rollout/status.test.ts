import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointStatus } from '../api/generated.ts';
import { fitted, progressOnly, rolloutBounds } from './status.ts';

const ready = (reason: string): MachineLearningEndpointStatus['conditions'] => [
  { type: 'Ready', status: 'False', reason, message: '', lastTransitionTime: '2026-11-30T12:00:00Z' },
];

describe('which status writes may wait', () => {
  it('lets the progress of a first version wait', () => {
    expect(progressOnly(undefined, { state: 'Creating', conditions: ready('Creating') }, false)).toBe(true);
    expect(progressOnly({ state: 'Creating' }, { state: 'Creating', conditions: ready('RoutePending') }, false)).toBe(
      true,
    );
  });

  it('writes at once the status that first names the serving version, even while the gateway has not taken the route', () => {
    // The route was just written; a round that ran before this status would find nothing serving.
    expect(
      progressOnly(
        { state: 'Creating' },
        { state: 'Creating', endpointConfigVersion: 'abc', conditions: ready('RoutePending') },
        false,
      ),
    ).toBe(false);
  });

  it('writes at once once something serves, and while the endpoint is deleted', () => {
    expect(
      progressOnly(
        { endpointConfigVersion: 'abc' },
        { endpointConfigVersion: 'abc', conditions: ready('RoutePending') },
        false,
      ),
    ).toBe(false);
    expect(progressOnly(undefined, { conditions: ready('Creating') }, true)).toBe(false);
  });
});

describe('status.rollout within the schema', () => {
  const rolloutSchema = (
    JSON.parse(
      readFileSync(new URL('../../../schemas/machinelearningendpoint.schema.json', import.meta.url), 'utf8'),
    ) as {
      properties: {
        status: {
          properties: {
            rollout: {
              properties: {
                message: { maxLength: number };
                smokeTest: { maxLength: number };
                history: { maxItems: number };
                analysis: { items: { properties: { message: { maxLength: number } } } };
              };
            };
          };
        };
      };
    }
  ).properties.status.properties.rollout.properties;

  it('has the bounds the schema gives', () => {
    expect(rolloutBounds).toEqual({
      message: rolloutSchema.message.maxLength,
      smokeTest: rolloutSchema.smokeTest.maxLength,
      analysisMessage: rolloutSchema.analysis.items.properties.message.maxLength,
      history: rolloutSchema.history.maxItems,
    });
  });

  it('cuts messages that quote a long answer or error, and keeps the latest steps', () => {
    const long = 'x'.repeat(10_000);
    const r = fitted({
      phase: 'Failed',
      message: long,
      smokeTest: `Failed: ${long}`,
      analysis: [{ name: 'errors', result: 'Inconclusive', message: long }],
      history: Array.from({ length: 80 }, (_, i) => ({
        step: i + 1,
        weight: i + 1,
        startedAt: '2026-12-06T12:00:00Z',
      })),
    });
    expect(r.message).toHaveLength(rolloutBounds.message);
    expect(r.message!.endsWith('...')).toBe(true);
    expect(r.smokeTest!.startsWith('Failed: x')).toBe(true);
    expect(r.smokeTest).toHaveLength(rolloutBounds.smokeTest);
    expect(r.analysis![0].message).toHaveLength(rolloutBounds.analysisMessage);
    expect(r.history).toHaveLength(rolloutBounds.history);
    expect(r.history![0].step).toBe(31);
    const short = { phase: 'Progressing' as const, message: 'ok', history: [] };
    expect(fitted(short)).toEqual(short);
  });
});
