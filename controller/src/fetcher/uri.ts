// Artifact URIs: parsing, the archive kind their path names, and redaction for logs.
import { UsageError } from './errors.ts';

export type ArtifactSource =
  | { scheme: 'http' | 'https'; uri: string; url: URL; path: string }
  | { scheme: 's3'; uri: string; bucket: string; key: string; path: string }
  | { scheme: 'gs'; uri: string; bucket: string; object: string; path: string }
  /**
   * Azure Blob Storage: azure://<account>/<container>/<blob>, or the blob's own URL
   * https://<account>.blob.core.windows.net/<container>/<blob> (`url`, with its SAS query if any).
   */
  | { scheme: 'azure'; uri: string; account: string; container: string; blob: string; path: string; url?: URL }
  | { scheme: 'pvc'; uri: string; claim: string; path: string };

const bucketPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{1,220}[A-Za-z0-9]$/;
const claimPattern = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
// Azure's rules: an account is 3-24 lowercase letters and digits; a container 3-63 of lowercase
// letters, digits and single hyphens, starting and ending with a letter or digit.
const accountPattern = /^[a-z0-9]{3,24}$/;
const containerPattern = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;
const azureHostSuffix = '.blob.core.windows.net';
const azureForm = 'azure://<account>/<container>/<blob> or https://<account>.blob.core.windows.net/<container>/<blob>';

function azureSource(uri: string, account: string, rest: string, url?: URL): ArtifactSource {
  if (!accountPattern.test(account))
    throw new UsageError(
      `invalid storage account name ${JSON.stringify(account)} in ${redactUri(uri)} (3 to 24 lowercase letters and digits; expected ${azureForm})`,
    );
  const slash = rest.indexOf('/');
  const container = slash < 0 ? rest : rest.slice(0, slash);
  const blob = slash < 0 ? '' : rest.slice(slash + 1);
  if (!containerPattern.test(container))
    throw new UsageError(
      `invalid container name ${JSON.stringify(container)} in ${redactUri(uri)} (expected ${azureForm})`,
    );
  if (!blob) throw new UsageError(`${redactUri(uri)} names a container but no blob (expected ${azureForm})`);
  if (blob.endsWith('/'))
    throw new UsageError(
      `${redactUri(uri)} names a prefix, not a blob: point spec.artifact at one blob (an archive such as model.tar.gz)`,
    );
  return { scheme: 'azure', uri, account, container, blob, path: blob, ...(url ? { url } : {}) };
}

/**
 * Parses an artifact URI. `path` is the part whose suffix decides the archive kind and whose last
 * segment names a plain file in the target. Throws UsageError on anything unsupported.
 */
export function parseArtifactUri(uri: string): ArtifactSource {
  const supported =
    'supported: http://, https://, s3://<bucket>/<key>, gs://<bucket>/<object>, azure://<account>/<container>/<blob>, pvc://<claim>/<path>';
  if (typeof uri !== 'string' || uri.trim() === '') throw new UsageError(`empty artifact URI (${supported})`);
  if (/[\0\r\n]/.test(uri)) throw new UsageError('artifact URI contains control characters');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new UsageError(`invalid URL ${redactUri(uri)}`);
    }
    if (!url.hostname) throw new UsageError(`URL ${redactUri(uri)} has no host`);
    // A blob's URL is fetched through the Blob service, with the pod's Azure credentials (or its SAS query).
    if (scheme === 'https' && url.hostname.toLowerCase().endsWith(azureHostSuffix) && !url.port) {
      const account = url.hostname.toLowerCase().slice(0, -azureHostSuffix.length);
      let rest: string;
      try {
        rest = decodeURIComponent(url.pathname.slice(1));
      } catch {
        throw new UsageError(`invalid percent-encoding in ${redactUri(uri)}`);
      }
      return azureSource(uri, account, rest, url);
    }
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      path = url.pathname;
    }
    return { scheme, uri, url, path };
  }
  if (scheme === 's3' || scheme === 'gs') {
    const m = /^[a-z0-9]+:\/\/([^/]*)\/?([\s\S]*)$/i.exec(uri)!;
    const [, bucket, key] = m;
    if (!bucketPattern.test(bucket))
      throw new UsageError(
        `invalid bucket name ${JSON.stringify(bucket)} in ${uri} (expected ${scheme}://<bucket>/<${scheme === 's3' ? 'key' : 'object'}>)`,
      );
    if (!key)
      throw new UsageError(
        `${uri} names a bucket but no object (expected ${scheme}://<bucket>/<${scheme === 's3' ? 'key' : 'object'}>)`,
      );
    if (key.endsWith('/'))
      throw new UsageError(
        `${uri} names a prefix, not an object: point spec.artifact at one object (an archive such as model.tar.gz)`,
      );
    return scheme === 's3' ? { scheme, uri, bucket, key, path: key } : { scheme, uri, bucket, object: key, path: key };
  }
  if (scheme === 'azure') {
    const m = /^azure:\/\/([^/]*)\/?([\s\S]*)$/i.exec(uri)!;
    return azureSource(uri, m[1], m[2]);
  }
  if (scheme === 'pvc') {
    const m = /^pvc:\/\/([^/]*)\/([\s\S]*)$/i.exec(uri);
    if (!m) throw new UsageError(`${uri}: expected pvc://<claim>/<path> (the path may be empty for the whole claim)`);
    const [, claim, rest] = m;
    if (!claimPattern.test(claim) || claim.length > 253)
      throw new UsageError(`invalid claim name ${JSON.stringify(claim)} in ${uri}`);
    const segments = rest.split('/').filter((s) => s !== '' && s !== '.');
    if (segments.includes('..')) throw new UsageError(`${uri}: the path must stay inside the claim (no '..')`);
    return { scheme: 'pvc', uri, claim, path: segments.join('/') };
  }
  throw new UsageError(`unsupported artifact URI ${redactUri(uri)} (${supported})`);
}

/** The URI without credentials: no user info, query values replaced (presigned URLs carry signatures). */
export function redactUri(uri: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*@)?([^?#]*)(\?[^#]*)?(#.*)?$/is.exec(uri);
  if (!m) return uri;
  const [, scheme, userinfo, rest, query] = m;
  const q = query
    ? '?' +
      query
        .slice(1)
        .split('&')
        .map((p) => (p.includes('=') ? `${p.slice(0, p.indexOf('='))}=REDACTED` : p))
        .join('&')
    : '';
  return `${scheme}${userinfo ? 'REDACTED@' : ''}${rest}${q}`;
}

export type ArchiveKind = 'tar.gz' | 'zip';

/** The archive kind of a path by its suffix (case-insensitive), or null for a plain file. */
export function archiveKind(path: string): ArchiveKind | null {
  const p = path.toLowerCase();
  if (p.endsWith('.tar.gz') || p.endsWith('.tgz')) return 'tar.gz';
  if (p.endsWith('.zip')) return 'zip';
  return null;
}
