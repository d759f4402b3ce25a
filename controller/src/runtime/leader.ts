// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: acquire
// or renew with a resourceVersion-guarded update every retryPeriod; judge another holder's lease
// expired by the local time at which this process last saw the lease record change (never by
// comparing clocks with the holder); give up leadership when renewals keep failing for renewDeadline.
import { KubeError, type KubeClient } from '../kube/client.ts';
import { resources, type KubeObject } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import { pause } from '../kube/pause.ts';

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectorOptions {
  namespace: string;
  name: string;
  identity: string;
  /** How long a lease lasts without renewal before another replica may take it. Default 15 s. */
  leaseDurationMs?: number;
  /** How long the leader keeps failing to renew before it gives up. Default 10 s. */
  renewDeadlineMs?: number;
  /** How often to try to acquire or renew. Default 2 s. */
  retryPeriodMs?: number;
  logger: Logger;
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  /** Leadership was lost (renewals failed for renewDeadline, or another holder took the lease); not called by release(). */
  onStoppedLeading(): void;
}

/** MicroTime, as the Lease API spells it: RFC 3339 with exactly six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly name: string;
  private readonly identity: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private readonly stopController = new AbortController();
  private leading = false;
  /** The lease as last read or written, and the local time at which its record last changed. */
  private observed: Lease | undefined;
  private observedAt = 0;

  constructor(client: KubeClient, options: LeaderElectorOptions) {
    this.client = client;
    this.namespace = options.namespace;
    this.name = options.name;
    this.identity = options.identity;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs)) {
      throw new Error('leader election needs leaseDuration > renewDeadline > retryPeriod');
    }
    this.log = options.logger.child({ lease: `${options.namespace}/${options.name}`, identity: options.identity });
  }

  /**
   * Resolves when this process holds the lease (after onStartedLeading), then keeps renewing it in the
   * background. If release() comes first, it never settles: callers may fire and forget it.
   */
  async run(callbacks: LeaderCallbacks): Promise<void> {
    const signal = this.stopController.signal;
    this.log.info('waiting to acquire the leader lease');
    for (;;) {
      if (signal.aborted) return new Promise<never>(() => {});
      if (await this.attempt()) break;
      await pause(this.retryPeriodMs, signal);
    }
    if (signal.aborted) {
      // release() came while the winning attempt was in flight.
      await this.releaseLease();
      return new Promise<never>(() => {});
    }
    this.leading = true;
    this.log.info('acquired the leader lease');
    callbacks.onStartedLeading();
    void this.renewLoop(callbacks);
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Stops renewing and releases the lease (holderIdentity cleared) so that another replica takes over at once. */
  async release(): Promise<void> {
    this.stopController.abort();
    if (!this.leading) return;
    this.leading = false;
    await this.releaseLease();
  }

  private async releaseLease(): Promise<void> {
    // A renewal still in flight may land first and make this update conflict: read again and retry.
    for (let attempt = 1; ; attempt++) {
      try {
        const lease = await this.client.get<Lease>(resources.lease, this.namespace, this.name);
        if (!lease || lease.spec?.holderIdentity !== this.identity) return;
        const now = microTime(Date.now());
        await this.client.update(resources.lease, {
          ...lease,
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now },
        });
        this.log.info('released the leader lease');
        return;
      } catch (err) {
        if (err instanceof KubeError && err.code === 409 && attempt < 3) continue;
        this.log.warn({ err }, 'could not release the leader lease; it will expire');
        return;
      }
    }
  }

  private async renewLoop(callbacks: LeaderCallbacks): Promise<void> {
    const signal = this.stopController.signal;
    let lastRenewal = Date.now();
    while (!signal.aborted) {
      await pause(this.retryPeriodMs, signal);
      if (signal.aborted) return;
      const deadline = lastRenewal + this.renewDeadlineMs;
      // A hung request must not keep this process leading past renewDeadline.
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>(
        (resolve) => (timer = setTimeout(() => resolve('expired'), Math.max(0, deadline - Date.now()))),
      );
      const outcome = await Promise.race([this.attempt(), expired]);
      clearTimeout(timer);
      if (signal.aborted) return;
      if (outcome === true) {
        lastRenewal = Date.now();
        continue;
      }
      const takenOver = this.observed?.spec?.holderIdentity && this.observed.spec.holderIdentity !== this.identity;
      if (!takenOver && Date.now() < deadline) continue;
      this.leading = false;
      this.stopController.abort();
      this.log.error(
        { holder: this.observed?.spec?.holderIdentity },
        takenOver ? 'another replica took the leader lease' : 'could not renew the leader lease in time; stepping down',
      );
      callbacks.onStoppedLeading();
      return;
    }
  }

  /** One try at acquiring or renewing the lease; true when this process holds it afterwards. */
  private async attempt(): Promise<boolean> {
    try {
      return await this.tryAcquireOrRenew();
    } catch (err) {
      if (err instanceof KubeError && err.code === 409) {
        this.log.debug('the lease changed under us; trying again');
      } else {
        this.log.warn({ err }, 'could not acquire or renew the leader lease');
      }
      return false;
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = Date.now();
    const mine: LeaseSpec = {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    const lease = await this.client.get<Lease>(resources.lease, this.namespace, this.name);
    if (!lease) {
      const created = await this.client.create<Lease>(resources.lease, {
        metadata: { name: this.name, namespace: this.namespace },
        spec: mine,
      });
      this.observe(created);
      return true;
    }
    if (lease.metadata.resourceVersion !== this.observed?.metadata.resourceVersion) this.observedAt = Date.now();
    this.observed = lease;
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const durationMs = (spec.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
    if (holder && holder !== this.identity && this.observedAt + durationMs > now) return false;
    const renewing = holder === this.identity;
    const updated = await this.client.update<Lease>(resources.lease, {
      ...lease,
      spec: {
        ...mine,
        acquireTime: renewing ? (spec.acquireTime ?? mine.acquireTime) : mine.acquireTime,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (renewing ? 0 : 1),
      },
    });
    this.observe(updated);
    return true;
  }

  private observe(lease: Lease): void {
    this.observed = lease;
    this.observedAt = Date.now();
  }
}
