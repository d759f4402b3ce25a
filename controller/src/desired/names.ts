// Names and versions of what the controller creates. Versions are content hashes, never clock
// values, so a controller that restarts at any point computes the same names and creates no
// duplicates.
import { createHash } from 'node:crypto';

export const maxNameLength = 63;
const versionLength = 10;

/** Short, stable hash of any JSON value (object keys sorted, so key order never matters). */
export function contentVersion(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, versionLength);
}

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * `<base>-<suffix>` as a DNS label of at most 63 characters: a long base is cut (and, so that two
 * long bases that share a prefix cannot collide, given a short hash of its full text) while the
 * suffix (the version) is always kept whole.
 */
export function versionedName(base: string, suffix: string): string {
  const full = `${base}-${suffix}`;
  if (full.length <= maxNameLength) return full;
  const baseHash = contentVersion(base).slice(0, 4);
  const room = maxNameLength - suffix.length - baseHash.length - 2;
  const cut = base.slice(0, room).replace(/[-.]+$/, '');
  return `${cut}-${baseHash}-${suffix}`;
}
