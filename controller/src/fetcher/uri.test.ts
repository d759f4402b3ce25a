import { describe, expect, it } from 'vitest';
import { archiveKind, parseArtifactUri, redactUri } from './uri.ts';

describe('parseArtifactUri', () => {
  it('parses every supported scheme', () => {
    expect(parseArtifactUri('https://example.com/models/m%20v1.tar.gz?x=1')).toMatchObject({
      scheme: 'https',
      path: '/models/m v1.tar.gz',
    });
    expect(parseArtifactUri('s3://my-bucket/dir/model.tar.gz')).toMatchObject({
      scheme: 's3',
      bucket: 'my-bucket',
      key: 'dir/model.tar.gz',
    });
    expect(parseArtifactUri('gs://bkt/a/b.zip')).toMatchObject({ scheme: 'gs', bucket: 'bkt', object: 'a/b.zip' });
    expect(parseArtifactUri('pvc://models/bert/')).toMatchObject({ scheme: 'pvc', claim: 'models', path: 'bert' });
    expect(parseArtifactUri('pvc://models/')).toMatchObject({ scheme: 'pvc', claim: 'models', path: '' });
    expect(parseArtifactUri('azure://acct1/models/bert/model.tar.gz')).toMatchObject({
      scheme: 'azure',
      account: 'acct1',
      container: 'models',
      blob: 'bert/model.tar.gz',
      path: 'bert/model.tar.gz',
    });
    const sas = parseArtifactUri('https://acct1.blob.core.windows.net/models/my%20model.zip?sv=2024&sig=abc');
    expect(sas).toMatchObject({ scheme: 'azure', account: 'acct1', container: 'models', blob: 'my model.zip' });
    expect(sas.scheme === 'azure' && sas.url?.search).toBe('?sv=2024&sig=abc');
    // Another host, or an explicit port, is a plain https:// download.
    expect(parseArtifactUri('https://blob.core.windows.net.example.com/c/b.bin')).toMatchObject({ scheme: 'https' });
  });
  it('refuses what it cannot fetch', () => {
    for (const bad of [
      '',
      'ftp://x/y',
      '/local/path',
      's3://',
      's3://bucket',
      's3://bucket/prefix/',
      'gs://b',
      'pvc://claim',
      'pvc://Bad_Claim/x',
      'pvc://c/../etc',
      'pvc://c/a/../../b',
      'http://',
      'azure://acct1/models',
      'azure://acct1/models/',
      'azure://acct1/models/dir/',
      'azure://Acct1/models/b',
      'azure://ab/models/b',
      'azure://acct1/Models/b',
      'azure://acct1/a--b/c',
      'https://acct1.blob.core.windows.net/models',
    ]) {
      expect(() => parseArtifactUri(bad), bad).toThrow();
    }
  });
});

describe('redactUri', () => {
  it('removes user info and query values', () => {
    expect(redactUri('https://u:p@h/x.bin?X-Amz-Signature=abc&y=2')).toBe(
      'https://REDACTED@h/x.bin?X-Amz-Signature=REDACTED&y=REDACTED',
    );
    expect(redactUri('s3://b/k.tar.gz')).toBe('s3://b/k.tar.gz');
  });
});

describe('archiveKind', () => {
  it('decides by suffix', () => {
    expect(archiveKind('/a/model.tar.gz')).toBe('tar.gz');
    expect(archiveKind('model.TGZ')).toBe('tar.gz');
    expect(archiveKind('x/model.zip')).toBe('zip');
    expect(archiveKind('model.bin')).toBeNull();
    expect(archiveKind('model.tar')).toBeNull();
    expect(archiveKind('model.gz')).toBeNull();
  });
});
