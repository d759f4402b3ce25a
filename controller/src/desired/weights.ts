/**
 * Turns relative weights into integer percentages that sum to exactly 100 (largest remainder
 * method: each share is rounded down, then the points left go to the largest fractions, ties to
 * the earlier entry). Zero weights get 0. At least one weight must be positive.
 */
export function percentages(weights: readonly number[]): number[] {
  const total = weights.reduce((sum, w) => sum + w, 0);
  if (weights.some((w) => !Number.isInteger(w) || w < 0))
    throw new Error(`weights must be integers >= 0, got ${weights.join(', ')}`);
  if (total <= 0) throw new Error('at least one weight must be greater than 0');
  const exact = weights.map((w) => (w * 100) / total);
  const result = exact.map(Math.floor);
  let left = 100 - result.reduce((sum, p) => sum + p, 0);
  const byRemainder = exact
    .map((e, i) => ({ i, remainder: e - Math.floor(e) }))
    .sort((a, b) => b.remainder - a.remainder || a.i - b.i);
  for (const { i } of byRemainder) {
    if (left === 0) break;
    if (weights[i] === 0) continue;
    result[i] += 1;
    left -= 1;
  }
  return result;
}

/**
 * `total` (a whole number) split in proportion to `weights` into whole numbers that sum to exactly
 * `total`, each as close to its exact part as that allows (largest remainder); a weight of 0 gets 0,
 * and so does everything when no weight is above 0.
 */
export function apportion(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, w) => a + Math.max(0, w), 0);
  if (sum <= 0 || total <= 0) return weights.map(() => 0);
  const exact = weights.map((w) => (Math.max(0, w) * total) / sum);
  const result = exact.map(Math.floor);
  let left = total - result.reduce((a, p) => a + p, 0);
  const byRemainder = exact
    .map((e, i) => ({ i, remainder: e - Math.floor(e) }))
    .sort((a, b) => b.remainder - a.remainder || a.i - b.i);
  for (const { i } of byRemainder) {
    if (left === 0) break;
    if (!(weights[i] > 0)) continue;
    result[i] += 1;
    left -= 1;
  }
  return result;
}
