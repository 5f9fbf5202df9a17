/**
 * Crash-safe file replacement. A checkpoint that is half-written when the process dies (OOM kill, Ctrl-C,
 * power loss) must never replace a good one, so data goes to a temporary sibling first and only a
 * `rename` — atomic on POSIX file systems and on NTFS within one volume — makes it visible.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * Error codes a directory fsync may fail with on platforms or file systems that simply do not support it
 * (Windows cannot open a directory for syncing; some network and FUSE file systems reject the call).
 * The rename has already happened by then, so these only mean durability is up to the OS.
 */
const UNSUPPORTED_DIR_SYNC = new Set([
  'EISDIR',
  'EPERM',
  'EACCES',
  'EINVAL',
  'ENOTSUP',
  'EOPNOTSUPP',
  'EBADF',
]);

/** Longest base name kept in the temp-file name, so the suffix cannot push it past NAME_MAX (255). */
const MAX_BASE_IN_TEMP = 200;

function tempPathFor(target: string): string {
  const base = basename(target).slice(0, MAX_BASE_IN_TEMP);
  // pid keeps concurrent processes apart; the random part keeps concurrent writes within one process apart.
  return join(dirname(target), `.${base}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Wrap an fs error so the message names the file the caller asked for (not the temp file), keeping `code`. */
function wrapError(target: string, what: string, err: unknown): Error {
  const cause = err instanceof Error ? err : new Error(String(err));
  const wrapped = new Error(`writeFileAtomic: ${what} '${target}': ${cause.message}`, { cause });
  const code = (cause as NodeJS.ErrnoException).code;
  if (code !== undefined) (wrapped as NodeJS.ErrnoException).code = code;
  return wrapped;
}

function isUnsupportedDirSync(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && UNSUPPORTED_DIR_SYNC.has(code);
}

/** Mode of an existing target, so replacing a file does not silently change its permissions. */
async function existingMode(target: string): Promise<number | undefined> {
  try {
    return (await fsp.stat(target)).mode & 0o7777;
  } catch {
    return undefined;
  }
}
function existingModeSync(target: string): number | undefined {
  try {
    return fs.statSync(target).mode & 0o7777;
  } catch {
    return undefined;
  }
}

/**
 * Write `data` to `path` atomically: readers see either the old file or the complete new one, never a
 * truncated mix, even if the process crashes mid-write.
 *
 * The data is written to a uniquely named temp file in the same directory (same file system, so the
 * rename is atomic), fsynced, renamed over `path`, and then the directory is fsynced so the rename
 * itself survives a power loss (best effort: skipped where the platform does not support it). Parent
 * directories are created as needed. An existing target keeps its permission bits. If `path` is a
 * symbolic link, the link itself is replaced.
 *
 * @param path - destination file; relative paths resolve against the current directory.
 * @param data - bytes, or a string written as UTF-8.
 * @throws Error naming `path` (with the original fs error as `cause` and its `code`) when any step
 *   before the rename fails; the temp file is removed first and the old target is left untouched.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const target = resolve(path);
  const dir = dirname(target);
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (err) {
    throw wrapError(target, 'cannot create the directory for', err);
  }
  const mode = await existingMode(target);
  const tmp = tempPathFor(target);
  let handle: fsp.FileHandle | undefined;
  try {
    // 'wx' fails rather than clobbering if the random name somehow already exists.
    handle = await fsp.open(tmp, 'wx', mode ?? 0o666);
    await handle.writeFile(data);
    if (mode !== undefined) await handle.chmod(mode); // open's mode is filtered by the umask
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw wrapError(target, 'cannot write', err);
  }
  try {
    const dirHandle = await fsp.open(dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  } catch (err) {
    if (!isUnsupportedDirSync(err)) throw wrapError(target, 'wrote but cannot sync the directory of', err);
  }
}

/**
 * Synchronous twin of {@link writeFileAtomic}, with the same guarantees, for code paths that cannot
 * await (process exit handlers, synchronous CLI steps).
 *
 * @param path - destination file; relative paths resolve against the current directory.
 * @param data - bytes, or a string written as UTF-8.
 * @throws Error naming `path` when any step before the rename fails; the temp file is removed first.
 */
export function writeFileAtomicSync(path: string, data: Uint8Array | string): void {
  const target = resolve(path);
  const dir = dirname(target);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw wrapError(target, 'cannot create the directory for', err);
  }
  const mode = existingModeSync(target);
  const tmp = tempPathFor(target);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', mode ?? 0o666);
    fs.writeFileSync(fd, data);
    if (mode !== undefined) fs.fchmodSync(fd, mode);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // already failing; the original error is the one worth reporting
      }
    }
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // same: never mask the original failure with a cleanup failure
    }
    throw wrapError(target, 'cannot write', err);
  }
  try {
    const dirFd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  } catch (err) {
    if (!isUnsupportedDirSync(err)) throw wrapError(target, 'wrote but cannot sync the directory of', err);
  }
}
