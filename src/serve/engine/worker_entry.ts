/**
 * Where the engine worker's code is. From the built package, `worker.js` sits next to this module. When
 * running from the TypeScript sources (vitest), there is no JavaScript to start a thread from, so the
 * worker is bundled from the current sources with esbuild (a dev dependency) into node_modules/.cache;
 * failing that, the last build in dist/ is used.
 */
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DeviceError } from '../../errors.js';

let bundled: Promise<URL> | undefined;

/** The URL to start the engine worker from. */
export function engineWorkerURL(): Promise<URL> {
  const compiled = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(compiled))) return Promise.resolve(compiled);
  bundled ??= bundleFromSources();
  return bundled;
}

async function bundleFromSources(): Promise<URL> {
  const repo = fileURLToPath(new URL('../../../', import.meta.url));
  const source = fileURLToPath(new URL('./worker.ts', import.meta.url));
  const dist = join(repo, 'dist', 'serve', 'engine', 'worker.js');
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch {
    if (existsSync(dist)) return pathToFileURL(dist);
    throw new DeviceError(`engine: cannot start the worker from TypeScript sources without esbuild, and ${dist} does not exist (run npm run build)`);
  }
  // Three levels below the repository, like src/runtime/cpu/: modules that find files relative to their
  // own location (the C runtime sources) look in the same places from the bundle.
  const dir = join(repo, 'node_modules', '.cache', 'tessera-engine');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'worker.mjs');
  const tmp = join(dir, `worker.${process.pid}.${Date.now()}.mjs`);
  await esbuild.build({ entryPoints: [source], outfile: tmp, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'silent' });
  // Atomic: a concurrent test process never starts a half-written bundle.
  renameSync(tmp, out);
  return pathToFileURL(out);
}
