// The errors of the client: what the API server refused, and what the client's fence kept from being sent.
/** A failed API call: the HTTP status code and the `reason` of the Status the server returned. */
export class KubeError extends Error {
  readonly code: number;
  /** Status.reason (NotFound, Conflict, Invalid, Expired, ...), or the HTTP status text. */
  readonly reason: string;
  readonly details?: unknown;

  constructor(message: string, code: number, reason: string, details?: unknown) {
    super(message);
    this.name = 'KubeError';
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
}

/** A write refused by the client's fence (KubeClientOptions.mayWrite): nothing was sent. */
export class FencedError extends Error {
  constructor(what: string) {
    super(`${what}: not sent: this replica does not hold the leader lease`);
    this.name = 'FencedError';
  }
}
