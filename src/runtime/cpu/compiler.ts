import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeviceError } from '../../errors.js';

/** A C compiler error: names the source file kept on disk and quotes the compiler's message. */
export class CompileError extends DeviceError {}

export interface CompilerConfig {
  /** Compiler command (`TESSERA_CC`, else `cc`). */
  cc: string;
  /** Flags for shared libraries (`TESSERA_CFLAGS` replaces the optimisation flags). */
  flags: string[];
  /** Where compiled libraries are cached (`TESSERA_CACHE_DIR`). */
  cacheDir: string;
}

export function defaultCacheDir(): string {
  const env = process.env.TESSERA_CACHE_DIR;
  if (env) return env;
  const xdg = process.env.XDG_CACHE_HOME;
  const home = homedir();
  return join(xdg || (home ? join(home, '.cache') : tmpdir()), 'tessera');
}

export function defaultCompilerConfig(): CompilerConfig {
  const opt = process.env.TESSERA_CFLAGS?.split(/\s+/).filter(Boolean) ?? ['-O3', '-march=native'];
  // No FP traps or errno are ever observed, and without them GCC can if-convert and vectorise the
  // selects and roundings of the math helpers; results are unchanged (unlike -ffast-math).
  // -fopenmp-simd honours the `omp simd reduction` pragmas on reduce loops (no OpenMP runtime).
  return { cc: process.env.TESSERA_CC || 'cc', flags: [...opt, '-fno-trapping-math', '-fno-math-errno', '-fopenmp-simd', '-std=gnu11', '-shared', '-fPIC'], cacheDir: defaultCacheDir() };
}

const versions = new Map<string, string | undefined>();

/** `cc --version` first line, or undefined when the compiler cannot run. Cached per command. */
export function compilerVersion(cc: string): string | undefined {
  if (!versions.has(cc)) {
    const r = spawnSync(cc, ['--version'], { encoding: 'utf8' });
    versions.set(cc, r.status === 0 ? r.stdout.split('\n')[0]!.trim() : undefined);
  }
  return versions.get(cc);
}

/** Directory holding the runtime's C sources (shipped in the package under src/). */
export function csrcDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [join(here, 'csrc'), join(here, '../../../src/runtime/cpu/csrc')]) {
    if (existsSync(join(candidate, 'support.c'))) return candidate;
  }
  throw new DeviceError(`cpu backend: cannot find the runtime C sources (support.c) near ${here}`);
}

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

export interface CompileStats {
  compiled: number;
  cacheHits: number;
  rebuiltCorrupt: number;
}
export const compileStats: CompileStats = { compiled: 0, cacheHits: 0, rebuiltCorrupt: 0 };

/**
 * Compile `source` to a shared library, cached on disk by a hash of (source, compiler version, flags,
 * extra key). A cached library is used only if its recorded checksum still matches its bytes; a
 * corrupted or truncated entry is rebuilt. Returns the library's path.
 */
export function compileShared(source: string, cfg: CompilerConfig, opts: { extraKey?: string; libs?: string[] } = {}): string {
  const version = compilerVersion(cfg.cc);
  if (!version) throw new CompileError(`cpu backend: C compiler '${cfg.cc}' not found or not runnable (set TESSERA_CC)`);
  const include = csrcDir();
  const key = sha256([source, version, cfg.flags.join(' '), opts.extraKey ?? '', readFileSync(join(include, 'gemm.h'), 'utf8'), readFileSync(join(include, 'tessera_api.h'), 'utf8')].join('\0')).slice(0, 32);
  mkdirSync(cfg.cacheDir, { recursive: true });
  const lib = join(cfg.cacheDir, `${key}.so`);
  const sumFile = `${lib}.sha256`;
  if (existsSync(lib) && existsSync(sumFile)) {
    if (readFileSync(sumFile, 'utf8').trim() === sha256(readFileSync(lib))) {
      compileStats.cacheHits++;
      return lib;
    }
    compileStats.rebuiltCorrupt++;
    rmSync(lib, { force: true });
    rmSync(sumFile, { force: true });
  }
  const src = join(cfg.cacheDir, `${key}.c`);
  writeFileSync(src, source);
  const tmp = `${lib}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    execFileSync(cfg.cc, [...cfg.flags, '-I', include, src, '-o', tmp, '-lm', ...(opts.libs ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e as { stderr?: Buffer; message: string };
    const msg = err.stderr?.toString().trim() || err.message;
    throw new CompileError(`cpu backend: compiling ${src} failed:\n${msg.split('\n').slice(0, 30).join('\n')}`);
  }
  writeFileSync(sumFile, sha256(readFileSync(tmp)) + '\n');
  renameSync(tmp, lib);
  compileStats.compiled++;
  return lib;
}
