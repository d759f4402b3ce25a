// Leader election against an in-memory Lease with the API server's optimistic concurrency, on fake
// timers. test/integration/runtime.test.ts runs the same on the real API server.
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KubeError, type KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/resources.ts';
import { LeaderElector } from './leader.ts';

type Lease = KubeObject & {
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; leaseTransitions?: number };
};

/** One Lease, shared by every client made from it; a client can be cut off from it. */
class LeaseServer {
  lease: Lease | undefined;
  private version = 0;
  writes = 0;

  client(): KubeClient & { down: boolean } {
    // The fake client's methods have their own `this`: `server` names the lease store they share.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const server = this;
    const client = {
      down: false,
      async get() {
        if (client.down) throw new Error('connect ECONNREFUSED');
        return server.lease && structuredClone(server.lease);
      },
      async create(_r: unknown, obj: Lease) {
        if (client.down) throw new Error('connect ECONNREFUSED');
        if (server.lease) throw new KubeError('409 AlreadyExists', 409, 'AlreadyExists');
        return server.store(obj);
      },
      async update(_r: unknown, obj: Lease) {
        if (client.down) throw new Error('connect ECONNREFUSED');
        if (obj.metadata.resourceVersion !== server.lease?.metadata.resourceVersion)
          throw new KubeError('409 Conflict', 409, 'Conflict');
        return server.store(obj);
      },
    };
    return client as unknown as KubeClient & { down: boolean };
  }

  private store(obj: Lease): Lease {
    this.writes++;
    this.lease = structuredClone({ ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.version) } });
    return structuredClone(this.lease);
  }
}

const logger = pino({ level: 'silent' });
const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

function elector(server: LeaseServer, identity: string) {
  const client = server.client();
  const le = new LeaderElector(client, { namespace: 'ns', name: 'lock', identity, logger, ...timing });
  const log: string[] = [];
  let leading = false;
  void le
    .run({ onStartedLeading: () => log.push('started'), onStoppedLeading: () => log.push('stopped') })
    .then(() => (leading = true));
  return { client, le, log, leading: () => leading };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('LeaderElector', () => {
  it('lets exactly one replica lead, and keeps renewing', async () => {
    const server = new LeaseServer();
    const a = elector(server, 'a');
    const b = elector(server, 'b');
    for (let t = 0; t < 60; t++) {
      await vi.advanceTimersByTimeAsync(1_000);
      expect([a.le.isLeader(), b.le.isLeader()]).toEqual([true, false]);
    }
    expect(a.log).toEqual(['started']);
    expect(a.leading()).toBe(true);
    expect(b.leading()).toBe(false);
    expect(server.lease?.spec).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 15, leaseTransitions: 0 });
    expect(server.lease?.spec.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(server.writes).toBeGreaterThan(25);
  });

  it('steps down after failing to renew for renewDeadline; another takes over once the lease expires', async () => {
    const server = new LeaseServer();
    const a = elector(server, 'a');
    await vi.advanceTimersByTimeAsync(0);
    const b = elector(server, 'b');
    // Cut off right after a successful renewal: the deadline counts from it.
    await vi.advanceTimersByTimeAsync(timing.retryPeriodMs);
    a.client.down = true;
    const cutAt = Date.now();
    await vi.advanceTimersByTimeAsync(timing.renewDeadlineMs - 1);
    expect(a.log).toEqual(['started']);
    await vi.advanceTimersByTimeAsync(1);
    expect(a.log).toEqual(['started', 'stopped']);
    expect(a.le.isLeader()).toBe(false);
    expect(b.le.isLeader()).toBe(false);
    while (!b.le.isLeader()) await vi.advanceTimersByTimeAsync(100);
    const takeover = Date.now() - cutAt;
    expect(takeover).toBeGreaterThanOrEqual(timing.leaseDurationMs - timing.retryPeriodMs);
    expect(takeover).toBeLessThanOrEqual(timing.leaseDurationMs + timing.retryPeriodMs);
    expect(server.lease?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('steps down at once when it finds another holder in the lease', async () => {
    const server = new LeaseServer();
    const a = elector(server, 'a');
    await vi.advanceTimersByTimeAsync(0);
    server.lease = {
      metadata: { ...server.lease!.metadata, resourceVersion: 'usurped' },
      spec: { ...server.lease!.spec, holderIdentity: 'usurper' },
    };
    await vi.advanceTimersByTimeAsync(timing.retryPeriodMs);
    expect(a.log).toEqual(['started', 'stopped']);
    expect(server.lease.spec.holderIdentity).toBe('usurper');
  });

  it('hands over at the next retry when the leader releases the lease', async () => {
    const server = new LeaseServer();
    const a = elector(server, 'a');
    await vi.advanceTimersByTimeAsync(0);
    const b = elector(server, 'b');
    await vi.advanceTimersByTimeAsync(5_000);
    await a.le.release();
    expect(server.lease?.spec.holderIdentity).toBe('');
    expect(a.log).toEqual(['started']);
    await vi.advanceTimersByTimeAsync(timing.retryPeriodMs);
    expect(b.le.isLeader()).toBe(true);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(a.le.isLeader()).toBe(false);
    expect(server.lease?.spec.holderIdentity).toBe('b');
  });

  it('never leads after release, even if it was still waiting', async () => {
    const server = new LeaseServer();
    const a = elector(server, 'a');
    await vi.advanceTimersByTimeAsync(0);
    const b = elector(server, 'b');
    await vi.advanceTimersByTimeAsync(1_000);
    await b.le.release();
    await a.le.release();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(b.le.isLeader()).toBe(false);
    expect(b.leading()).toBe(false);
    expect(b.log).toEqual([]);
    expect(server.lease?.spec.holderIdentity).toBe('');
  });

  it('rejects timings that cannot work', () => {
    expect(
      () =>
        new LeaderElector(new LeaseServer().client(), {
          namespace: 'ns',
          name: 'l',
          identity: 'a',
          logger,
          leaseDurationMs: 5_000,
          renewDeadlineMs: 5_000,
        }),
    ).toThrow(/leaseDuration > renewDeadline/);
  });
});
