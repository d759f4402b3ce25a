// One mirrored request: the serving version's answer and the shadow's, compared. Predictions are
// labels (equal JSON values) or numbers (within an absolute and a relative tolerance); an array is
// compared element by element, each element one prediction, so that a batch of 150 rows weighs as
// 150 single-row requests. Nothing here throws on what a model answers.
import { extractPrediction, parsePath, type Answer, type PathSegment } from './prediction.ts';

export interface CompareSpec {
  /** Where the prediction is in the answer (default `$`, the whole answer). */
  path?: string;
  /** `labels` (default): equal values; `numbers`: within the tolerances. */
  kind?: 'labels' | 'numbers';
  /** |serving - shadow| <= absoluteTolerance + relativeTolerance * |serving|; both default to 0. */
  absoluteTolerance?: number;
  relativeTolerance?: number;
}

export interface Comparer {
  readonly spec: Required<CompareSpec>;
  readonly segments: readonly PathSegment[];
}

export type ComparerResult = { ok: true; comparer: Comparer } | { ok: false; error: string };

/** Checks a spec once (a wrong path or tolerance is the user's to fix, said in the status). */
export function comparer(spec: CompareSpec = {}): ComparerResult {
  const path = parsePath(spec.path ?? '$');
  if (!path.ok) return path;
  const full: Required<CompareSpec> = {
    path: spec.path ?? '$',
    kind: spec.kind ?? 'labels',
    absoluteTolerance: spec.absoluteTolerance ?? 0,
    relativeTolerance: spec.relativeTolerance ?? 0,
  };
  for (const key of ['absoluteTolerance', 'relativeTolerance'] as const) {
    if (!Number.isFinite(full[key]) || full[key] < 0)
      return { ok: false, error: `${key} is ${full[key]}: it must be a number >= 0` };
  }
  return { ok: true, comparer: { spec: full, segments: path.segments } };
}

/** What one mirrored request adds to the statistics. */
export interface PairOutcome {
  servingError: boolean;
  shadowError: boolean;
  servingLatencyMs: number;
  shadowLatencyMs: number;
  /** Whether the predictions were compared: both sides answered 2xx and the serving answer was readable. */
  compared: boolean;
  /** Predictions compared (array elements) and how many agreed. */
  predictions: number;
  agreeing: number;
  /** For numbers: the sum of |serving - shadow| over the numeric values compared, and their count. */
  absDiffSum: number;
  absDiffCount: number;
  /** Why a side's answer could not be read: the shadow's counts as disagreement, the serving side's as not compared. */
  unreadable?: { side: 'serving' | 'shadow'; reason: string };
}

const succeeded = (a: Answer) => a.status >= 200 && a.status < 300;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Equal JSON values, members in any order. */
function sameLabel(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameLabel(x, b[i]));
  }
  if (isPlainObject(a) || isPlainObject(b)) {
    if (!isPlainObject(a) || !isPlainObject(b)) return false;
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && sameLabel(a[k], b[k]));
  }
  return a === b;
}

interface NumberMatch {
  within: boolean;
  diffSum: number;
  diffCount: number;
}

/** Numbers (or arrays of numbers, nested) of the same shape, each within the tolerance. */
function sameNumber(s: unknown, h: unknown, spec: Required<CompareSpec>): NumberMatch {
  if (typeof s === 'number' && typeof h === 'number') {
    const diff = Math.abs(s - h);
    return {
      within: diff <= spec.absoluteTolerance + spec.relativeTolerance * Math.abs(s),
      diffSum: diff,
      diffCount: 1,
    };
  }
  if (Array.isArray(s) && Array.isArray(h) && s.length === h.length) {
    const all = { within: true, diffSum: 0, diffCount: 0 };
    for (const [i, x] of s.entries()) {
      const m = sameNumber(x, h[i], spec);
      all.within &&= m.within;
      all.diffSum += m.diffSum;
      all.diffCount += m.diffCount;
    }
    return all;
  }
  return { within: false, diffSum: 0, diffCount: 0 };
}

/** Compares the answers of one mirrored request. */
export function compareAnswers(c: Comparer, serving: Answer, shadow: Answer): PairOutcome {
  const outcome: PairOutcome = {
    servingError: !succeeded(serving),
    shadowError: !succeeded(shadow),
    servingLatencyMs: serving.latencyMs,
    shadowLatencyMs: shadow.latencyMs,
    compared: false,
    predictions: 0,
    agreeing: 0,
    absDiffSum: 0,
    absDiffCount: 0,
  };
  if (outcome.servingError || outcome.shadowError) return outcome;
  const s = extractPrediction(serving, c.segments);
  if (!s.ok) return { ...outcome, unreadable: { side: 'serving', reason: s.unreadable } };
  const servingValues = Array.isArray(s.value) ? (s.value as unknown[]) : [s.value];
  const h = extractPrediction(shadow, c.segments);
  if (!h.ok) {
    return {
      ...outcome,
      compared: true,
      predictions: Math.max(servingValues.length, 1),
      unreadable: { side: 'shadow', reason: h.unreadable },
    };
  }
  const shadowValues = Array.isArray(h.value) ? (h.value as unknown[]) : [h.value];
  const predictions = Math.max(servingValues.length, shadowValues.length);
  // Arrays of different lengths pair no element with its counterpart: every prediction disagrees.
  if (Array.isArray(s.value) !== Array.isArray(h.value) || servingValues.length !== shadowValues.length) {
    return { ...outcome, compared: true, predictions };
  }
  let agreeing = 0;
  let absDiffSum = 0;
  let absDiffCount = 0;
  for (const [i, sv] of servingValues.entries()) {
    if (c.spec.kind === 'labels') {
      if (sameLabel(sv, shadowValues[i])) agreeing++;
      continue;
    }
    const m = sameNumber(sv, shadowValues[i], c.spec);
    if (m.within) agreeing++;
    absDiffSum += m.diffSum;
    absDiffCount += m.diffCount;
  }
  return { ...outcome, compared: true, predictions, agreeing, absDiffSum, absDiffCount };
}
