// One captured request/answer as a line of SageMaker's Data Capture format, with our fields under
// `mlOperator`. Text content types keep their bytes as a string (JSON or CSV encoding) when the bytes
// are valid UTF-8; anything else, or a text cut in the middle of a character, is base64, so that a
// reader always gets back exactly the bytes that were sent.
import { randomUUID } from 'node:crypto';
import type { CaptureOption, Identity } from './config.ts';

export interface CapturedBody {
  contentType: string | undefined;
  /** The first bytes of the body, at most maxRecordBytes. */
  bytes: Buffer;
  truncated: boolean;
}

export interface Exchange {
  inferenceId: string | undefined;
  /** The request is a copy another agent sent (x-ml-operator-copy: the comparison's name). */
  copyOf?: string;
  /** When the request arrived. */
  time: Date;
  status: number;
  latencyMs: number;
  input: CapturedBody;
  output: CapturedBody;
  /** The answers of the shadows the request was mirrored to. */
  shadows?: ShadowExchange[];
}

export interface ShadowExchange {
  variant: string;
  /** 0: no answer (refused, reset, timed out). */
  status: number;
  latencyMs: number;
  /** Whether every prediction agreed with the serving answer; absent when they were not compared. */
  agreed?: boolean;
  output: CapturedBody;
}

export interface CaptureData {
  observedContentType: string;
  mode: 'INPUT' | 'OUTPUT';
  data: string;
  encoding: 'JSON' | 'CSV' | 'BASE64';
}

export interface CaptureRecord {
  captureData: { endpointInput?: CaptureData; endpointOutput?: CaptureData };
  eventMetadata: { eventId: string; inferenceId?: string; inferenceTime: string };
  eventVersion: '0';
  mlOperator: {
    endpoint: string;
    variant: string;
    modelVersion: string;
    pod: string;
    status: number;
    latencyMs: number;
    truncated: boolean;
    /** The request was a copy another agent sent to compare (a shadow's, or the serving version's under an agreement check): not a client's. */
    copyOf?: string;
    /** The shadows' answers to the same request, when it was mirrored. */
    shadows?: {
      variant: string;
      status: number;
      latencyMs: number;
      agreed?: boolean;
      endpointOutput: CaptureData;
      truncated: boolean;
    }[];
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const mediaType = (contentType: string | undefined) => (contentType ?? '').split(';')[0].trim().toLowerCase();

/** The encoding SageMaker readers expect for a body of this content type. */
export function encodingOf(
  contentType: string | undefined,
  textContentTypes: readonly string[],
): 'JSON' | 'CSV' | 'BASE64' {
  const type = mediaType(contentType);
  if (!type || !textContentTypes.includes(type)) return 'BASE64';
  return type.endsWith('json') ? 'JSON' : 'CSV';
}

function captureData(body: CapturedBody, mode: 'INPUT' | 'OUTPUT', textContentTypes: readonly string[]): CaptureData {
  let encoding = encodingOf(body.contentType, textContentTypes);
  let data: string | undefined;
  if (encoding !== 'BASE64') {
    try {
      data = utf8.decode(body.bytes);
    } catch {
      encoding = 'BASE64';
    }
  }
  return { observedContentType: body.contentType ?? '', mode, data: data ?? body.bytes.toString('base64'), encoding };
}

export function toRecord(
  exchange: Exchange,
  options: readonly CaptureOption[],
  textContentTypes: readonly string[],
  identity: Identity,
): CaptureRecord {
  const captureData_: CaptureRecord['captureData'] = {};
  if (options.includes('Input')) captureData_.endpointInput = captureData(exchange.input, 'INPUT', textContentTypes);
  if (options.includes('Output'))
    captureData_.endpointOutput = captureData(exchange.output, 'OUTPUT', textContentTypes);
  const truncated =
    (options.includes('Input') && exchange.input.truncated) ||
    (options.includes('Output') && exchange.output.truncated);
  return {
    captureData: captureData_,
    eventMetadata: {
      eventId: randomUUID(),
      ...(exchange.inferenceId !== undefined ? { inferenceId: exchange.inferenceId } : {}),
      inferenceTime: exchange.time.toISOString(),
    },
    eventVersion: '0',
    mlOperator: {
      endpoint: identity.endpoint,
      variant: identity.variant,
      modelVersion: identity.modelVersion,
      pod: identity.pod,
      status: exchange.status,
      latencyMs: Math.round(exchange.latencyMs * 1000) / 1000,
      truncated,
      ...(exchange.copyOf !== undefined ? { copyOf: exchange.copyOf } : {}),
      ...(exchange.shadows?.length
        ? {
            shadows: exchange.shadows.map((s) => ({
              variant: s.variant,
              status: s.status,
              latencyMs: Math.round(s.latencyMs * 1000) / 1000,
              ...(s.agreed !== undefined ? { agreed: s.agreed } : {}),
              endpointOutput: captureData(s.output, 'OUTPUT', textContentTypes),
              truncated: s.output.truncated,
            })),
          }
        : {}),
    },
  };
}

/** Decodes a record's data back to the bytes captured (for readers and tests). */
export function dataBytes(d: CaptureData): Buffer {
  return d.encoding === 'BASE64' ? Buffer.from(d.data, 'base64') : Buffer.from(d.data, 'utf8');
}
