import { createReadStream } from 'node:fs';
import { mkdir, readdir, realpath, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { builtinModules } from 'node:module';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TesseraError, ValueError } from '../errors.js';

/**
 * `tessera web`: bundle the browser entry point (`src/browser.ts`) with esbuild into `web/dist/` and
 * serve `web/` (the demos) over HTTP on 127.0.0.1. WebGPU needs a secure context, which
 * `http://127.0.0.1` and `http://localhost` are (a file:// page or a LAN address is not).
 *
 * esbuild is a devDependency and is loaded only when a build is needed, so importing this module
 * costs nothing.
 */

/** The package root: this file is `src/cli/web.ts` or `dist/cli/web.js`, two levels down either way. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The folder served by {@link serveWeb}. */
export const WEB_DIR = join(ROOT, 'web');
/** Where {@link buildWeb} writes `tessera.js` by default. */
export const WEB_DIST = join(WEB_DIR, 'dist');
const ENTRY = join(ROOT, 'src', 'browser.ts');
const BUNDLE = 'tessera.js';

/** Imports a browser bundle must never contain: Node's built-in modules, the native CPU backend, Dawn. */
const NODE_BUILTINS = builtinModules.filter((m) => !m.startsWith('_'));
const FORBIDDEN = new RegExp(
  `^(node:.*|koffi|webgpu|${NODE_BUILTINS.map((m) => m.replace(/[/]/g, '\\/')).join('|')})(\\/.*)?$`,
);

export interface BuildWebOptions {
  /** Output folder (default `web/dist`). */
  outdir?: string;
  /** Entry module (default `src/browser.ts`). */
  entry?: string;
  /** Minify (default false: the demo bundle stays readable; the source map is written either way). */
  minify?: boolean;
}

export interface BuildWebResult {
  /** Path of the bundle. */
  file: string;
  /** Its size in bytes. */
  bytes: number;
  /** The source files that went into it, relative to the package root. */
  inputs: string[];
}

/** esbuild, or undefined when it is not installed. */
async function tryEsbuild(): Promise<typeof import('esbuild') | undefined> {
  try {
    return await import('esbuild');
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return undefined;
    throw e;
  }
}

/** esbuild, or an error that says how to get it. */
async function loadEsbuild(): Promise<typeof import('esbuild')> {
  const esbuild = await tryEsbuild();
  if (esbuild) return esbuild;
  throw new TesseraError(
    'tessera web: building the browser bundle needs esbuild, a devDependency of tessera that is not installed here; run `npm install` in the tessera checkout (or `npm install -D esbuild`), or build the bundle elsewhere with `npm run build:web`',
  );
}

/**
 * Bundle `src/browser.ts` into `<outdir>/tessera.js` (ESM, browser, ES2022, with a source map). An import
 * of a Node built-in (`fs`, `node:*`, ...), `koffi` or `webgpu` (Dawn) anywhere in the graph fails the
 * build with a message naming the importing file: those belong to the Node entry point only.
 */
export async function buildWeb(opts: BuildWebOptions = {}): Promise<BuildWebResult> {
  const esbuild = await loadEsbuild();
  const outdir = resolve(opts.outdir ?? WEB_DIST);
  await mkdir(outdir, { recursive: true });
  const file = join(outdir, BUNDLE);
  const entry = resolve(opts.entry ?? ENTRY);
  const nodeOnly: import('esbuild').Plugin = {
    name: 'tessera-no-node',
    setup(build) {
      build.onResolve({ filter: FORBIDDEN }, (args) => ({
        errors: [
          {
            text: `the browser bundle must not import '${args.path}' (Node-only: Node built-ins, koffi and Dawn load only through the Node entry point src/index.ts)`,
            detail: { importer: args.importer },
          },
        ],
      }));
    },
  };
  let result: import('esbuild').BuildResult<{ metafile: true; write: true }>;
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      outfile: file,
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      sourcemap: true,
      minify: opts.minify ?? false,
      metafile: true,
      write: true,
      logLevel: 'silent',
      legalComments: 'none',
      plugins: [nodeOnly],
    });
  } catch (e) {
    const errors = (e as { errors?: import('esbuild').Message[] }).errors;
    if (!errors?.length) throw e;
    const lines = errors.map(
      (m) => `${m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : ''}${m.text}`,
    );
    throw new TesseraError(`tessera web: the browser bundle failed to build:\n  ${lines.join('\n  ')}`);
  }
  const out = Object.entries(result.metafile.outputs).find(([p]) => p.endsWith(BUNDLE));
  return {
    file,
    bytes: out ? out[1].bytes : (await stat(file)).size,
    inputs: Object.keys(result.metafile.inputs).sort(),
  };
}

/** The newest modification time under `dir` (0 when it does not exist). */
async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, await newestMtime(p));
    else if (e.isFile()) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.wgsl': 'text/wgsl; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

export interface ServeWebOptions {
  /** TCP port (default 8080; 0 picks a free one). */
  port?: number;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /**
   * Bundle `src/browser.ts` first: true always; false never (the bundle must exist); by default when the
   * bundle is missing or older than a file under `src/`.
   */
  build?: boolean;
  /** Progress lines (the bundle size); default silent. */
  log?: (line: string) => void;
}

export interface WebServer {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Stop listening and close open connections. */
  close(): Promise<void>;
}

/**
 * Serve the demos in `web/` (building the browser bundle first when needed) with a small static file
 * server: GET and HEAD only, content types for HTML, JS, source maps, WASM, ...; 404 for a missing file;
 * no path outside `web/` is reachable (`..`, encoded slashes, symbolic links leaving the folder).
 */
export async function serveWeb(opts: ServeWebOptions = {}): Promise<WebServer> {
  const port = opts.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ValueError(`tessera web: --port must be an integer in 0..65535, got ${port}`);
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log ?? (() => {});
  const bundle = join(WEB_DIST, BUNDLE);
  const built = (await stat(bundle).catch(() => undefined))?.mtimeMs;
  let rebuild = opts.build;
  if (rebuild === undefined) {
    rebuild = built === undefined || (await newestMtime(join(ROOT, 'src'))) > built;
    // A bundle older than the sources still serves where esbuild is not installed.
    if (rebuild && built !== undefined && !(await tryEsbuild())) {
      log(
        `tessera web: ${bundle} is older than src/, but esbuild is not installed to rebuild it; serving it as is`,
      );
      rebuild = false;
    }
  }
  if (rebuild) {
    const r = await buildWeb();
    log(`tessera web: built ${r.file} (${(r.bytes / 1024).toFixed(1)} KiB)`);
  } else if (built === undefined) {
    throw new TesseraError(`tessera web: ${bundle} is missing; build it with \`npm run build:web\``);
  }
  const root = await realpath(WEB_DIR);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'cache-control': 'no-store',
        ...headers,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(405, 'method not allowed\n', { allow: 'GET, HEAD' });
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return send(400, 'bad request\n');
    }
    if (pathname.includes('\0')) return send(400, 'bad request\n');
    let file = resolve(root, '.' + (pathname.endsWith('/') ? pathname + 'index.html' : pathname));
    if (file !== root && !file.startsWith(root + sep)) return send(404, 'not found\n');
    let info = await stat(file).catch(() => undefined);
    if (info?.isDirectory()) {
      file = join(file, 'index.html');
      info = await stat(file).catch(() => undefined);
    }
    if (!info?.isFile()) return send(404, 'not found\n');
    // A symbolic link must not lead out of the served folder.
    const real = await realpath(file);
    if (!real.startsWith(root + sep)) return send(404, 'not found\n');
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': String(info.size),
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') return void res.end();
    const stream = createReadStream(real);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      fail(
        e.code === 'EADDRINUSE'
          ? new TesseraError(`tessera web: port ${port} on ${host} is in use; pick another with --port`)
          : e,
      ),
    );
    server.listen(port, host, () => ok());
  });
  const addr = server.address() as AddressInfo;
  // A wildcard address is reachable as 127.0.0.1, which (unlike a LAN address) is a secure context.
  const shown =
    host === '0.0.0.0' || host === '::'
      ? '127.0.0.1'
      : addr.family === 'IPv6'
        ? `[${addr.address}]`
        : addr.address;
  return {
    url: `http://${shown}:${addr.port}`,
    close: () =>
      new Promise<void>((ok, fail) => {
        server.close((e) => (e ? fail(e) : ok()));
        server.closeAllConnections();
      }),
  };
}
