#!/usr/bin/env node
// Bundle Tessera for browsers: src/browser.ts -> web/dist/tessera.js (ESM, ES2022, with a source map).
// The esbuild configuration lives in src/cli/web.ts (`buildWeb`, shared with `tessera web`); this
// script runs its compiled form, so `npm run build:web` compiles the TypeScript first.
//   node scripts/build-web.mjs [--outdir DIR] [--minify]
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/cli/web.js', import.meta.url));

/**
 * Build the browser bundle; see `buildWeb` in src/cli/web.ts.
 * @param {{ outdir?: string, minify?: boolean }} [opts]
 * @returns {Promise<{ file: string, bytes: number, inputs: string[] }>}
 */
export async function buildWeb(opts = {}) {
  if (!existsSync(compiled))
    throw new Error(
      `build-web: ${compiled} is missing; run \`npm run build\` first (or \`npm run build:web\`, which does)`,
    );
  const web = await import(pathToFileURL(compiled).href);
  return web.buildWeb(opts);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const opts = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--outdir' && args[i + 1]) opts.outdir = args[++i];
    else if (args[i] === '--minify') opts.minify = true;
    else {
      console.error(
        `usage: node scripts/build-web.mjs [--outdir DIR] [--minify] (unknown argument '${args[i]}')`,
      );
      process.exit(2);
    }
  }
  try {
    const t0 = performance.now();
    const r = await buildWeb(opts);
    console.log(
      `build-web: ${r.file}: ${(r.bytes / 1024).toFixed(1)} KiB from ${r.inputs.length} files in ${Math.round(performance.now() - t0)} ms`,
    );
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  }
}
