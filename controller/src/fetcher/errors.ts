// The two ways a fetch ends badly, which main() turns into exit codes.

/** Bad arguments: exit code 2. */
export class UsageError extends Error {}

/** A failed fetch: exit code 1. `retryable` for network errors, 5xx and 429. */
export class FetchError extends Error {
  retryable: boolean;
  constructor(message: string, retryable = false) {
    super(message);
    this.retryable = retryable;
  }
}
