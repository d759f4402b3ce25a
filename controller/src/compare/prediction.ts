// Where the prediction is in a model's answer: a small subset of JSON path (`$`, `$.a.b`, `$.a[0]`,
// `$.predictions[*]`, `$.items[*].label`), and the answer's bytes read as JSON. An answer that cannot
// be read is a value of its own (`unreadable`), never an exception: a shadow may answer anything.

/** One step of a path: a member, an index, or every element of an array. */
export type PathSegment = { member: string } | { index: number } | { every: true };

export type ParsedPath = { ok: true; segments: PathSegment[] } | { ok: false; error: string };

const segmentPattern = /^(?:\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[(\*)\]|\['([^'\\]*)'\]|\["([^"\\]*)"\])/;

/** Parses a prediction path; the default, `$`, is the whole answer. */
export function parsePath(path = '$'): ParsedPath {
  if (!path.startsWith('$'))
    return { ok: false, error: `the prediction path ${JSON.stringify(path)} does not start with $` };
  const segments: PathSegment[] = [];
  let rest = path.slice(1);
  while (rest.length > 0) {
    const m = segmentPattern.exec(rest);
    if (!m) {
      return {
        ok: false,
        error: `the prediction path ${JSON.stringify(path)} has ${JSON.stringify(rest)} where .name, [0], [*] or ['name'] was expected`,
      };
    }
    if (m[1] !== undefined) segments.push({ member: m[1] });
    else if (m[2] !== undefined) segments.push({ index: Number(m[2]) });
    else if (m[3] !== undefined) segments.push({ every: true });
    else segments.push({ member: m[4] ?? m[5] });
    rest = rest.slice(m[0].length);
  }
  return { ok: true, segments };
}

/** A model's answer as the agent saw it. `status` 0: no answer (refused, reset, timed out). */
export interface Answer {
  status: number;
  contentType?: string;
  body: Uint8Array | string;
  latencyMs: number;
}

export type Extracted = { ok: true; value: unknown } | { ok: false; unreadable: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isJsonType(contentType: string | undefined): boolean {
  if (contentType === undefined || contentType === '') return true;
  const type = contentType.split(';')[0].trim().toLowerCase();
  return type === 'application/json' || type.endsWith('+json');
}

function follow(value: unknown, segments: readonly PathSegment[], at: string): Extracted {
  if (segments.length === 0) return { ok: true, value };
  const [step, ...rest] = segments;
  if ('every' in step) {
    if (!Array.isArray(value)) return { ok: false, unreadable: `${at} is not an array` };
    const values: unknown[] = [];
    for (const [i, element] of (value as unknown[]).entries()) {
      const got = follow(element, rest, `${at}[${i}]`);
      if (!got.ok) return got;
      values.push(got.value);
    }
    return { ok: true, value: values };
  }
  if ('index' in step) {
    if (!Array.isArray(value)) return { ok: false, unreadable: `${at} is not an array` };
    if (step.index >= value.length) return { ok: false, unreadable: `${at} has no element ${step.index}` };
    return follow((value as unknown[])[step.index], rest, `${at}[${step.index}]`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, step.member)) {
    return { ok: false, unreadable: `${at} has no member ${JSON.stringify(step.member)}` };
  }
  return follow((value as Record<string, unknown>)[step.member], rest, `${at}.${step.member}`);
}

/**
 * The prediction in a successful answer. A JSON answer (or one with no content type) is parsed and
 * the path followed; an answer of another content type is its text, for the whole-answer path only.
 */
export function extractPrediction(answer: Answer, segments: readonly PathSegment[]): Extracted {
  let text: string;
  try {
    text = typeof answer.body === 'string' ? answer.body : utf8.decode(answer.body);
  } catch {
    return { ok: false, unreadable: 'the answer is not UTF-8' };
  }
  if (!isJsonType(answer.contentType)) {
    if (segments.length === 0) return { ok: true, value: text };
    return { ok: false, unreadable: `the answer is ${answer.contentType}, not JSON` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, unreadable: `the answer is not JSON (${(e as Error).message})` };
  }
  return follow(json, segments, '$');
}
