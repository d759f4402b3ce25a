// Whether a live object already is what the controller wants, so that a converged system makes no
// write requests. The content hash stamped on every desired object catches every change of ours
// (including a field we stopped setting); the subset check catches drift made by someone else.
import type { KubeObject } from '../kube/resources.ts';
import { desiredHashAnnotation } from './labels.ts';

const quantityPattern = /^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$/;
const suffixes: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The value of a Kubernetes quantity ("500m", "2Gi", "1e3"), or undefined when it is not one. */
export function quantityValue(value: string | number): number | undefined {
  if (typeof value === 'number') return value;
  const match = value.match(quantityPattern);
  if (!match) return undefined;
  const number = Number(match[1]);
  if (Number.isNaN(number)) return undefined;
  const suffix = match[2] ?? '';
  // E alone is exa; an exponent has digits.
  if (/^[eE][+-]?[0-9]+$/.test(suffix)) return number * 10 ** Number(suffix.slice(1));
  return number * suffixes[suffix];
}

/** A quantity as an exact fraction, numerator / 10^scale (floats cannot round it to thousandths as the API server does). */
function exactQuantity(value: string | number): { numerator: bigint; scale: number } | undefined {
  const m = String(value).match(/^([0-9]*)(?:\.([0-9]*))?([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$/);
  if (!m || (!m[1] && !m[2])) return undefined;
  const decimals = m[2] ?? '';
  let numerator = BigInt(`${m[1]}${decimals}` || '0');
  let scale = decimals.length;
  const suffix = m[3] ?? '';
  const binary = ({ Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 } as Record<string, number>)[suffix];
  const decimal = /^[eE]./.test(suffix)
    ? Number(suffix.slice(1))
    : ({ n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 } as Record<string, number>)[suffix];
  if (binary !== undefined) numerator <<= BigInt(binary);
  else if (decimal >= 0) numerator *= 10n ** BigInt(decimal);
  else scale -= decimal;
  return { numerator, scale };
}

/** The API server rounds resource quantities up to thousandths ("0.0001" is stored as "1m"). */
function thousandthsUp(value: string | number): bigint | undefined {
  const q = exactQuantity(value);
  if (!q) return undefined;
  const denominator = 10n ** BigInt(q.scale);
  return (q.numerator * 1000n + denominator - 1n) / denominator;
}

/**
 * True when every field of `desired` is present in `live` with an equal value. Arrays must match
 * element by element; numbers and quantity strings compare by value, because the API server
 * rewrites quantities in canonical form ("1000m" becomes "1") and rounds resources up to thousandths.
 */
export function contains(live: unknown, desired: unknown): boolean {
  if (desired === undefined) return true;
  if (Array.isArray(desired)) {
    return Array.isArray(live) && live.length === desired.length && desired.every((d, i) => contains(live[i], d));
  }
  if (desired !== null && typeof desired === 'object') {
    if (live === null || typeof live !== 'object' || Array.isArray(live)) return false;
    return Object.entries(desired).every(([k, v]) => contains((live as Record<string, unknown>)[k], v));
  }
  if (live === desired) return true;
  if (
    (typeof desired === 'string' || typeof desired === 'number') &&
    (typeof live === 'string' || typeof live === 'number')
  ) {
    const a = quantityValue(desired);
    const b = quantityValue(live);
    if (a === undefined || b === undefined) return false;
    if (Math.abs(a - b) <= Math.abs(a) * 1e-12) return true;
    const [x, y] = [thousandthsUp(desired), thousandthsUp(live)];
    return x !== undefined && x === y;
  }
  return false;
}

/** The live object needs no write: it carries our last hash and still holds every field we set. */
export function upToDate(live: KubeObject | undefined, desired: KubeObject): boolean {
  if (!live) return false;
  const hash = desired.metadata.annotations?.[desiredHashAnnotation];
  if (live.metadata.annotations?.[desiredHashAnnotation] !== hash) return false;
  const { metadata, ...rest } = desired;
  return (
    contains(live, rest) &&
    contains(live.metadata, { labels: metadata.labels, ownerReferences: metadata.ownerReferences })
  );
}
