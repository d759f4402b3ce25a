// The client-side rate limit of every request but watches (client-go's token bucket).
/**
 * A token bucket shared by every request of one client: `burst` requests at once, then `qps` a
 * second. Requests past the bucket reserve their turn, so they go out in order.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly qps: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(qps: number, burst: number, now: () => number = () => performance.now()) {
    if (!(qps > 0) || !(burst >= 1))
      throw new Error(`rate limit: qps must be positive and burst at least 1 (got qps ${qps}, burst ${burst})`);
    this.qps = qps;
    this.burst = burst;
    this.tokens = burst;
    this.now = now;
    this.last = now();
  }

  /** Milliseconds the caller must wait before its request; its token is taken now. */
  reserve(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }
}
