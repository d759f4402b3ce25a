// AWS Signature Version 4, enough to sign the s3:// GETs of the fetcher.
import { createHash, createHmac } from 'node:crypto';

const unsignedPayload = 'UNSIGNED-PAYLOAD';

/** AWS URI encoding: everything but A-Z a-z 0-9 - _ . ~ is percent-encoded ('/' kept unless encodeSlash). */
export function awsUriEncode(value: string, encodeSlash = true): string {
  const encoded = encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return encodeSlash ? encoded : encoded.replace(/%2F/g, '/');
}

export interface S3SignInput {
  method?: string;
  /** Host header value (with the port when not the scheme's default). */
  host: string;
  /** The path exactly as sent, already URI-encoded (see awsUriEncode); S3 paths are not normalised. */
  path: string;
  /** Raw query string without '?'. */
  query?: string;
  /** Extra headers to sign and send, such as range. */
  headers?: Record<string, string>;
  region: string;
  service?: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Defaults to UNSIGNED-PAYLOAD. */
  payloadHash?: string;
  /** The request time: a Date or an ISO basic timestamp such as 20130524T000000Z. */
  date: Date | string;
}

const sha256Hex = (data: string) => createHash('sha256').update(data, 'utf8').digest('hex');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

/** Signs a request with AWS SigV4; returns every header to send (lowercase names), authorization included. */
export function signS3Request(input: S3SignInput): Record<string, string> {
  const method = (input.method ?? 'GET').toUpperCase();
  const service = input.service ?? 's3';
  const payloadHash = input.payloadHash ?? unsignedPayload;
  const amzDate = typeof input.date === 'string' ? input.date : input.date.toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
  if (!/^\d{8}T\d{6}Z$/.test(amzDate)) throw new Error(`invalid SigV4 date ${amzDate}`);
  const dateStamp = amzDate.slice(0, 8);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v;
  headers.host = input.host;
  headers['x-amz-date'] = amzDate;
  headers['x-amz-content-sha256'] = payloadHash;
  if (input.sessionToken) headers['x-amz-security-token'] = input.sessionToken;
  delete headers.authorization;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((n) => `${n}:${headers[n].trim().replace(/\s+/g, ' ')}\n`).join('');
  const signedHeaders = names.join(';');
  const canonicalQuery = (input.query ?? '')
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const i = p.indexOf('=');
      const [k, v] = i < 0 ? [p, ''] : [p.slice(0, i), p.slice(i + 1)];
      const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
      return [awsUriEncode(dec(k)), awsUriEncode(dec(v))];
    })
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalRequest = [method, input.path || '/', canonicalQuery, canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${dateStamp}/${input.region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const kDate = hmac(`AWS4${input.secretAccessKey}`, dateStamp);
  const kSigning = hmac(hmac(hmac(kDate, input.region), service), 'aws4_request');
  const signature = createHmac('sha256', kSigning).update(stringToSign, 'utf8').digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${input.accessKeyId}/${scope},SignedHeaders=${signedHeaders},Signature=${signature}`;
  return headers;
}
