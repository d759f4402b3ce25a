// Where the project keeps what it fetches or builds (Node.js, the Go tools), outside the repository
// so that every clone on the machine shares it. Override with ML_OPERATOR_CACHE.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** @returns {string} */
export function cacheRoot() {
  return process.env.ML_OPERATOR_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ml-operator');
}
