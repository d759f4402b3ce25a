import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseTarLine, safeEntries } from './members.ts';
import { extract, unpack } from './unpack.ts';
import { checkTree, defaultMaxEntries } from './verify.ts';

const unbounded = { maxEntries: defaultMaxEntries };

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fetcher-unpack-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** One member of an archive built for a test; `link` is a link's target, `zeros` a size of zero bytes. */
interface Member {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo' | 'chr' | 'blk';
  data?: string;
  link?: string;
  zeros?: number;
}

// Python's tarfile and zipfile write whatever they are given, which the tar and zip tools refuse to
// create: absolute names, links anywhere, devices.
const builder = String.raw`
import io, json, stat, sys, tarfile, zipfile
path, kind, members = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
class Zeros(io.RawIOBase):
    def __init__(self, n): self.left = n
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
def content(m):
    return io.BufferedReader(Zeros(m['zeros'])) if 'zeros' in m else io.BytesIO(m.get('data', '').encode())
def size(m):
    return m['zeros'] if 'zeros' in m else len(m.get('data', '').encode())
if kind == 'tar.gz':
    types = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE, 'hardlink': tarfile.LNKTYPE, 'fifo': tarfile.FIFOTYPE, 'chr': tarfile.CHRTYPE, 'blk': tarfile.BLKTYPE}
    with tarfile.open(path, 'w:gz', format=tarfile.PAX_FORMAT) as t:
        for m in members:
            info = tarfile.TarInfo(m['name'])
            info.type = types[m.get('type', 'file')]
            info.linkname = m.get('link', '')
            info.mode = 0o755 if info.type == tarfile.DIRTYPE else 0o644
            if info.type == tarfile.REGTYPE:
                info.size = size(m)
                t.addfile(info, content(m))
            else:
                t.addfile(info)
else:
    modes = {'file': stat.S_IFREG | 0o644, 'dir': stat.S_IFDIR | 0o755, 'symlink': stat.S_IFLNK | 0o777, 'fifo': stat.S_IFIFO | 0o644, 'chr': stat.S_IFCHR | 0o644, 'blk': stat.S_IFBLK | 0o644}
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        for m in members:
            info = zipfile.ZipInfo(m['name'])
            info.create_system = 3
            info.external_attr = modes[m.get('type', 'file')] << 16
            with z.open(info, 'w') as out:
                src = io.BytesIO(m['link'].encode()) if 'link' in m else content(m)
                while chunk := src.read(1 << 20):
                    out.write(chunk)
`;

function archive(kind: 'tar.gz' | 'zip', members: Member[]): string {
  const file = join(dir, `archive-${readdirSync(dir).length}.${kind}`);
  execFileSync('python3', ['-c', builder, file, kind, JSON.stringify(members)]);
  return file;
}

// Rewrites the uncompressed size of a one-member zip, in its local header and its central directory.
const lie = String.raw`
import struct, sys
path, size = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, 'rb').read())
struct.pack_into('<I', data, 22, size)
central = data.find(b'PK')
struct.pack_into('<I', data, central + 24, size)
open(path, 'wb').write(data)
`;

/** A directory beside the extraction directory, which a hostile archive aims at. */
function outside(): string {
  const path = join(dir, 'outside');
  mkdirSync(path, { recursive: true });
  return path;
}

/** Unpacks and expects a refusal before anything was extracted. */
async function expectRefused(kind: 'tar.gz' | 'zip', members: Member[], reason: RegExp): Promise<void> {
  const into = join(dir, 'into');
  const error = await unpack(kind, archive(kind, members), into, `https://h/a.${kind}`, unbounded).then(
    () => null,
    (e: unknown) => e as Error,
  );
  expect(error?.message).toMatch(/^unsafe archive: /);
  expect(error?.message).toMatch(reason);
  expect(error?.message).toMatch(/; nothing was extracted: /);
  expect(existsSync(into)).toBe(false);
  if (existsSync(join(dir, 'outside'))) expect(readdirSync(join(dir, 'outside'))).toEqual([]);
}

describe('safeEntries', () => {
  it('accepts relative members', () => {
    expect(safeEntries(['./', './model.bin', 'sub/', 'sub/a..b', ''])).toEqual([
      './',
      './model.bin',
      'sub/',
      'sub/a..b',
    ]);
  });
  it('refuses members that escape the target or hit the fetcher files', () => {
    for (const bad of [
      '../evil',
      '/etc/passwd',
      'a/../../b',
      './..',
      'a\\..\\..\\b',
      'C:/x',
      '.ml-operator-artifact',
      './.fetch-x/y',
    ]) {
      expect(() => safeEntries(['ok', bad]), bad).toThrow(/unsafe archive/);
    }
  });
});

describe('parseTarLine', () => {
  it('reads names and link targets with spaces, arrows, quotes and escaped bytes', () => {
    expect(parseTarLine('lrw-r--r-- 0/0               0 2024-01-01 00:00 "a -> b" -> "c \\"d\\""')).toEqual({
      name: 'a -> b',
      type: 'symlink',
      size: 0,
      link: 'c "d"',
    });
    expect(parseTarLine('hrw-r--r-- 0/0 0 2024-01-01 00:00 "x" link to "y\\nz"')).toEqual({
      name: 'x',
      type: 'hardlink',
      size: 0,
      link: 'y\nz',
    });
    expect(parseTarLine('-rw-r--r-- 0/0 5 2024-01-01 00:00 "\\303\\274.bin"')).toEqual({
      name: '\u00fc.bin',
      type: 'file',
      size: 5,
    });
    expect(parseTarLine('crw-r--r-- 0/0 1,3 2024-01-01 00:00 "null"')).toEqual({
      name: 'null',
      type: 'character device',
      size: 0,
    });
    expect(() => parseTarLine('no quoted name')).toThrow(/unexpected listing line/);
  });
});

describe('hostile archives', () => {
  it('refuses a tar member written through a symbolic link of the archive', async () => {
    await expectRefused(
      'tar.gz',
      [
        { name: 'link', type: 'symlink', link: outside() },
        { name: 'link/passwd', data: 'pwned' },
      ],
      /link\/passwd would be written through the symbolic link link;/,
    );
    await expectRefused(
      'tar.gz',
      [
        { name: 'sub', type: 'dir' },
        { name: 'link', type: 'symlink', link: 'sub' },
        { name: 'link/x', data: 'x' },
      ],
      /link\/x would be written through the symbolic link link;/,
    );
  });

  it('refuses a zip member written through a symbolic link of the archive', async () => {
    await expectRefused(
      'zip',
      [
        { name: 'link', type: 'symlink', link: outside() },
        { name: 'link/passwd', data: 'pwned' },
      ],
      /link\/passwd would be written through the symbolic link link;/,
    );
  });

  it('refuses a symbolic link that points outside the target', async () => {
    await expectRefused(
      'tar.gz',
      [{ name: 'passwd', type: 'symlink', link: '/etc/passwd' }],
      /symbolic link passwd points outside the artifact \(\/etc\/passwd\)/,
    );
    await expectRefused(
      'tar.gz',
      [{ name: 'a/up', type: 'symlink', link: '../../x' }],
      /symbolic link a\/up points outside the artifact \(\.\.\/\.\.\/x\)/,
    );
  });

  it('refuses a hard link to a file that is not in the archive', async () => {
    await expectRefused(
      'tar.gz',
      [{ name: 'hl', type: 'hardlink', link: join(outside(), 'secret') }],
      /hard link hl points to \/.*\/outside\/secret, which is not a file of the archive/,
    );
    await expectRefused(
      'tar.gz',
      [{ name: 'hl', type: 'hardlink', link: '../outside/secret' }],
      /hard link hl points to \.\.\/outside\/secret, which is not a file of the archive/,
    );
  });

  it('keeps a hard link to a file of the archive', async () => {
    const into = join(dir, 'into');
    await unpack(
      'tar.gz',
      archive('tar.gz', [
        { name: 'w.bin', data: 'weights' },
        { name: 'alias.bin', type: 'hardlink', link: 'w.bin' },
      ]),
      into,
      'https://h/a.tar.gz',
      unbounded,
    );
    expect(readFileSync(join(into, 'alias.bin'), 'utf8')).toBe('weights');
  });

  it('refuses members outside the target: .. and absolute paths', async () => {
    await expectRefused('tar.gz', [{ name: '../evil', data: 'x' }], /"\.\.\/evil"/);
    await expectRefused('zip', [{ name: '../evil', data: 'x' }], /"\.\.\/evil"/);
    await expectRefused('tar.gz', [{ name: '/abs/evil', data: 'x' }], /"\/abs\/evil"/);
    await expectRefused('zip', [{ name: '/abs/evil', data: 'x' }], /"\/abs\/evil"/);
  });

  it('refuses devices and fifos', async () => {
    await expectRefused(
      'tar.gz',
      [
        { name: 'ok.bin', data: 'x' },
        { name: 'null', type: 'chr' },
      ],
      /null is a character device/,
    );
    await expectRefused('tar.gz', [{ name: 'disk', type: 'blk' }], /disk is a block device/);
    await expectRefused('tar.gz', [{ name: 'pipe', type: 'fifo' }], /pipe is a fifo/);
    await expectRefused('zip', [{ name: 'pipe', type: 'fifo' }], /pipe is a fifo/);
    await expectRefused('zip', [{ name: 'null', type: 'chr' }], /null is a character device/);
  });

  it('refuses a zip symbolic link that points outside, once extracted (a zip listing does not show targets)', async () => {
    const into = join(dir, 'into');
    await unpack(
      'zip',
      archive('zip', [{ name: 'passwd', type: 'symlink', link: '/etc/passwd' }]),
      into,
      'https://h/a.zip',
      unbounded,
    );
    await expect(checkTree(into)).rejects.toThrow(/symbolic link passwd points outside the artifact \(\/etc\/passwd\)/);
  });

  it('refuses a chain of links that leads outside, which no link shows alone', async () => {
    // a/b -> .. is the root; x -> a/b/.. then is the root's parent, although it reads as a/.
    const into = join(dir, 'into');
    await unpack(
      'tar.gz',
      archive('tar.gz', [
        { name: 'a', type: 'dir' },
        { name: 'a/b', type: 'symlink', link: '..' },
        { name: 'x', type: 'symlink', link: 'a/b/..' },
      ]),
      into,
      'https://h/a.tar.gz',
      unbounded,
    );
    await expect(checkTree(into)).rejects.toThrow(/symbolic link x points outside the artifact \(a\/b\/\.\.\)/);
  });

  it('keeps symbolic links inside the artifact', async () => {
    const into = join(dir, 'into');
    const file = archive('tar.gz', [
      { name: 'v2', type: 'dir' },
      { name: 'v2/w.bin', data: 'w' },
      { name: 'latest', type: 'symlink', link: 'v2' },
      { name: 'v2/up', type: 'symlink', link: '../latest/w.bin' },
    ]);
    await unpack('tar.gz', file, into, 'https://h/a.tar.gz', unbounded);
    await checkTree(into);
    expect(readFileSync(join(into, 'v2', 'up'), 'utf8')).toBe('w');
  });
});

describe('limits', () => {
  const limits = (maxBytes: number, maxEntries = 1000) => ({ maxBytes, maxEntries });

  it('refuses before extraction an archive whose listing is larger than --max-bytes', async () => {
    for (const kind of ['tar.gz', 'zip'] as const) {
      const into = join(dir, `into-${kind}`);
      const file = archive(kind, [
        { name: 'a.bin', data: 'x'.repeat(600) },
        { name: 'b.bin', data: 'x'.repeat(600) },
      ]);
      await expect(unpack(kind, file, into, `https://h/a.${kind}`, limits(1000))).rejects.toThrow(
        `archive https://h/a.${kind} unpacks to more than --max-bytes=1000: its listing shows 1200 bytes so far; nothing was extracted`,
      );
      expect(existsSync(into)).toBe(false);
    }
  });

  it('counts the directories that members create without listing them', async () => {
    const into = join(dir, 'into');
    const file = archive('tar.gz', [{ name: 'a/b/c/d.bin', data: 'x' }]);
    await expect(unpack('tar.gz', file, into, 'https://h/a.tar.gz', limits(1000, 3))).rejects.toThrow(
      'archive https://h/a.tar.gz holds more than 3 entries (files, directories and links): 4 so far; nothing was extracted: pack the model into fewer files',
    );
    expect(existsSync(into)).toBe(false);
    await unpack('tar.gz', file, into, 'https://h/a.tar.gz', limits(1000, 4));
    expect(readFileSync(join(into, 'a/b/c/d.bin'), 'utf8')).toBe('x');
  });

  it('stops a zip whose headers understate its content', async () => {
    // The headers say 100 bytes; the data inflates to 20 MB. unzip believes the data.
    const file = archive('zip', [{ name: 'big.bin', zeros: 20 * 1024 * 1024 }]);
    execFileSync('python3', ['-c', lie, file, '100']);
    const into = join(dir, 'into');
    await expect(unpack('zip', file, into, 'https://h/a.zip', limits(1024 * 1024))).rejects.toThrow(
      /^unpacking https:\/\/h\/a\.zip stopped: it wrote \d+ bytes, more than --max-bytes=1048576, although its listing shows 100 bytes: its headers do not match its content; rebuild the archive/,
    );
  });

  it('bounds tar by the decompressed stream, whatever its listing said, even without --max-bytes', async () => {
    const file = archive('tar.gz', [{ name: 'big.bin', zeros: 64 * 1024 * 1024 }]);
    const into = join(dir, 'into');
    mkdirSync(into);
    // As if the listing had shown one small file.
    await expect(
      extract('tar.gz', file, into, 'https://h/a.tar.gz', unbounded, { bytes: 100, entries: 1 }),
    ).rejects.toThrow(
      /^unpacking https:\/\/h\/a\.tar\.gz stopped: tar read more than \d+ bytes of the decompressed archive, although its listing shows 100 bytes: its headers do not match its content; rebuild the archive$/,
    );
    expect(statSync(join(into, 'big.bin')).size).toBeLessThan(32 * 1024 * 1024);
  });
});
