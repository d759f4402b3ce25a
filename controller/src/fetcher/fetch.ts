// One fetch, start to end: the source into a temporary directory on the target volume, unpacked and
// checked there, then installed with rename(2) and the marker written last.
//
// Safe to run again and from several replicas at once on one shared volume: everything is fetched
// into <target>/.fetch-<random>/, and a run that finds a marker for the same artifact (the same URI,
// and the same digest when one is expected) does nothing.
// Artifacts are streamed to disk, never held in memory, and bounded by --max-bytes: the download as
// it arrives, an archive by its listing before extraction and by what it writes during it.
import { mkdir, mkdtemp, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { azureOpener } from './azure.ts';
import {
  copyFromClaim,
  defaultRetryDelaysMs,
  downloadFromStore,
  downloadRequest,
  downloadWithRetries,
  type DownloadContext,
} from './download.ts';
import { gcsOpener } from './gcs.ts';
import {
  install,
  markerMatches,
  markerName,
  readMarker,
  removeStaleTemps,
  removeTree,
  safeBasename,
  tempPrefix,
  type Marker,
} from './install.ts';
import { makeLog, type Env } from './log.ts';
import { s3Opener } from './s3.ts';
import { unpack } from './unpack.ts';
import { archiveKind, redactUri, type ArtifactSource } from './uri.ts';
import { checkDigest, checkTree, defaultMaxEntries, type DownloadResult, type Limits } from './verify.ts';

/** What to fetch, from the command line. */
export interface FetchRequest {
  source: ArtifactSource;
  /** An absolute path. */
  target: string;
  /** The SHA-256 digest (lowercase hex) the downloaded file must have; nothing is installed otherwise. */
  sha256?: string;
  /** The variant's volume size: bounds the download and, separately, the unpacked artifact. */
  maxBytes?: number;
}

export interface Options {
  /** Delays between the 3 attempts (default 1s, 2s). */
  retryDelaysMs?: number[];
  /** Idle socket timeout (default 60s). */
  timeoutMs?: number;
  /** Where log lines go (default stderr). */
  log?: (line: string) => void;
  /**
   * The container's termination message file, which the kubelet shows in the pod's status (the
   * container's terminationMessagePath): a failure's message is written there when it exists.
   */
  terminationLog?: string;
}

/** Fetches the source into `target`; resolves when done, throws FetchError otherwise. */
export async function fetchArtifact(
  { source, target, sha256, maxBytes }: FetchRequest,
  env: Env,
  options: Options = {},
): Promise<'fetched' | 'skipped'> {
  const log = makeLog(env, options.log ?? ((line) => process.stderr.write(`${line}\n`)));
  const { uri } = source;
  const shown = redactUri(uri);
  const limits: Limits = { maxBytes, maxEntries: defaultMaxEntries };
  await mkdir(target, { recursive: true });
  await removeStaleTemps(target, log);
  const before = await readMarker(target);
  if (markerMatches(before, uri, sha256)) {
    log('info', 'already fetched', { uri: shown, sha256: before.sha256, fetchedAt: before.fetchedAt });
    return 'skipped';
  }
  const tmp = await mkdtemp(join(target, tempPrefix));
  // Keeps the temporary directory fresh so that other replicas do not take it for a stale one.
  const heartbeat = setInterval(() => {
    const t = new Date();
    utimes(tmp, t, t).catch(() => {});
  }, 60_000);
  heartbeat.unref();
  try {
    const download = join(tmp, 'download');
    const content = join(tmp, 'content');
    const trash = join(tmp, 'trash');
    await Promise.all([mkdir(download), mkdir(trash)]);
    const kind = archiveKind(source.path);
    let file: string | undefined;
    let result: DownloadResult | null;
    log('info', 'start', { uri: shown, target, kind: kind ?? 'file', maxBytes: maxBytes ?? null });
    if (maxBytes === undefined)
      log('warn', 'no --max-bytes: the download and the unpacked artifact are not bounded', { uri: shown });
    if (source.scheme === 'pvc') {
      ({ file, result } = await copyFromClaim(source, env, download, content, log, {
        singleFile: sha256 !== undefined,
        limits,
      }));
    } else {
      file = join(download, safeBasename(source.path));
      const timeoutMs = options.timeoutMs ?? 60_000;
      const ctx: DownloadContext = {
        source,
        env,
        log,
        timeoutMs,
        retryDelaysMs: options.retryDelaysMs ?? defaultRetryDelaysMs,
        maxBytes,
      };
      if (source.scheme === 's3') result = await downloadFromStore(s3Opener(source, env, log, timeoutMs), file, ctx);
      else if (source.scheme === 'gs') {
        const gcs = gcsOpener(source, env, log, timeoutMs);
        result = await downloadFromStore(gcs.open, file, ctx, gcs.translate);
      } else if (source.scheme === 'azure')
        result = await downloadFromStore(azureOpener(source, env, log, timeoutMs), file, ctx);
      else result = await downloadWithRetries(downloadRequest(source, env), file, ctx);
    }
    if (result) {
      log('info', 'downloaded', { uri: shown, bytes: result.bytes, sha256: result.sha256 });
      // Before unpacking: an archive that is not the expected one is not even opened.
      if (sha256) checkDigest(result, sha256, uri);
    }
    let markerKind: Marker['kind'] = 'directory';
    if (file && kind) {
      const members = await unpack(kind, file, content, uri, limits);
      await rm(file, { force: true });
      markerKind = kind;
      log('info', 'unpacked', { uri: shown, kind, members });
    } else if (file) {
      await mkdir(content);
      await rename(file, join(content, basename(file)));
      markerKind = 'file';
    }
    const tree = await checkTree(content);
    // Another replica may have finished meanwhile: then its files are in place already.
    const now = await readMarker(target);
    if (markerMatches(now, uri, sha256)) {
      log('info', 'already fetched by another replica', { uri: shown });
      return 'skipped';
    }
    if (now) await unlink(join(target, markerName)).catch(() => {});
    await install(content, target, trash);
    const marker: Marker = {
      uri,
      sha256: result?.sha256 ?? null,
      bytes: result?.bytes ?? tree.bytes,
      kind: markerKind,
      fetchedAt: new Date().toISOString(),
    };
    const markerTmp = join(tmp, 'marker');
    await writeFile(markerTmp, `${JSON.stringify(marker)}\n`, { mode: 0o644 });
    await rename(markerTmp, join(target, markerName));
    log('info', 'done', { uri: shown, target, files: tree.files, bytes: tree.bytes, sha256: marker.sha256 });
    return 'fetched';
  } finally {
    clearInterval(heartbeat);
    await removeTree(tmp).catch((e: unknown) =>
      log('warn', 'could not remove temporary directory', { path: tmp, error: (e as Error).message }),
    );
  }
}
