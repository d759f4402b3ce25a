import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpointStatus } from '../api/generated.ts';
import { progressOnly } from './status.ts';

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
