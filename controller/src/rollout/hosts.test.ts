import { describe, expect, it } from 'vitest';
import type { MachineLearningEndpoint } from '../api/generated.ts';
import { hostHolder } from './hosts.ts';

const endpoint = (
  name: string,
  created: string,
  status?: MachineLearningEndpoint['status'],
): MachineLearningEndpoint => ({
  metadata: { name, namespace: 'ns', uid: name, creationTimestamp: created as never },
  spec: { config: 'c', host: 'api.example.com' },
  ...(status ? { status } : {}),
});

describe('the holder of a host', () => {
  it('is the oldest claimant when none serves it yet', () => {
    expect(
      hostHolder('api.example.com', [endpoint('b', '2026-01-02T00:00:00Z'), endpoint('a', '2026-01-01T00:00:00Z')])
        ?.metadata.name,
    ).toBe('a');
  });
  it('is the one already serving it, even if a claimant is older (an old endpoint that moves onto a taken host is refused)', () => {
    const older = endpoint('old', '2026-01-01T00:00:00Z', { host: 'other.example.com', endpointConfigVersion: 'v1' });
    const serving = endpoint('new', '2026-01-02T00:00:00Z', { host: 'api.example.com', endpointConfigVersion: 'v2' });
    expect(hostHolder('api.example.com', [older, serving])?.metadata.name).toBe('new');
  });
  it('is not one that was itself refused the host, nor one being deleted', () => {
    const refused = endpoint('a', '2026-01-01T00:00:00Z', {
      host: 'api.example.com',
      endpointConfigVersion: 'v1',
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'HostConflict',
          message: '',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    });
    const deleting = {
      ...endpoint('b', '2026-01-01T00:00:00Z'),
      metadata: {
        ...endpoint('b', '2026-01-01T00:00:00Z').metadata,
        deletionTimestamp: '2026-01-03T00:00:00Z' as never,
      },
    };
    expect(
      hostHolder('api.example.com', [refused, deleting, endpoint('c', '2026-01-05T00:00:00Z')])?.metadata.name,
    ).toBe('a');
  });
});
