import { describe, expect, it } from 'vitest';
import { signS3Request } from './sigv4.ts';

describe('signS3Request', () => {
  it("matches AWS's published GET Object example", () => {
    const headers = signS3Request({
      method: 'GET',
      host: 'examplebucket.s3.amazonaws.com',
      path: '/test.txt',
      headers: { Range: 'bytes=0-9' },
      region: 'us-east-1',
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      payloadHash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      date: '20130524T000000Z',
    });
    expect(headers.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    );
    expect(headers['x-amz-date']).toBe('20130524T000000Z');
    expect(headers.range).toBe('bytes=0-9');
  });
  it('signs UNSIGNED-PAYLOAD and the session token by default', () => {
    const h = signS3Request({ host: 'b.s3.us-east-1.amazonaws.com', path: '/k', region: 'us-east-1', accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'TOK', date: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) });
    expect(h['x-amz-content-sha256']).toBe('UNSIGNED-PAYLOAD');
    expect(h['x-amz-date']).toBe('20240102T030405Z');
    expect(h['x-amz-security-token']).toBe('TOK');
    expect(h.authorization).toMatch(/SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,Signature=[0-9a-f]{64}$/);
  });
});
