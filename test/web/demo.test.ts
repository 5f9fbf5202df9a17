// The browser side: the esbuild bundle of src/browser.ts (never any Node-only module), the static server
// of `tessera web`, and the demo page (web/index.html) training a tiny GPT with WebGPU in headless
// Chromium. Without a GPU, Chromium's WebGPU runs on SwiftShader (software Vulkan).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWeb, serveWeb, WEB_DIST } from '../../src/cli/web.js';
import type { BuildWebResult, WebServer } from '../../src/cli/web.js';

const root = join(import.meta.dirname, '../..');
const CHROMIUM = '/usr/bin/chromium';
/**
 * `--enable-unsafe-webgpu` exposes navigator.gpu on Linux (with a SwiftShader adapter when there is no
 * GPU). `disable_workgroup_init` skips Dawn's zero-initialization of workgroup memory, which makes
 * SwiftShader compile the pipelines about 6x faster; Tessera's kernels write shared memory before
 * reading it, and the losses and samples are bit-identical with and without it.
 */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-dawn-features=disable_workgroup_init',
];

/** What the test reads of the page (window.tessera, set by web/demo.js). */
interface DemoState {
  losses: number[];
  sample: string | null;
  done: boolean;
  error: string | null;
  adapter: { vendor: string; architecture: string } | null;
  adapterName: string | null;
  msPerStep: number | null;
  jit: boolean | null;
}
/** The few page globals the test touches, typed here because the project compiles without the DOM lib. */
interface PageGlobals {
  tessera?: DemoState;
  document: {
    getElementById(id: string): {
      textContent: string | null;
      width: number;
      height: number;
      getContext(kind: '2d'): {
        getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
      };
    };
  };
}

let bundle: BuildWebResult;
let server: WebServer;

beforeAll(async () => {
  bundle = await buildWeb();
  server = await serveWeb({ port: 0, build: false });
});

afterAll(async () => {
  await server?.close();
});

/** A raw GET or HEAD (no URL normalization, unlike fetch), for the path-traversal checks. */
function rawGet(path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  const { hostname, port } = new URL(server.url);
  return new Promise((ok, fail) => {
    const req = request({ host: hostname, port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        ok({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }),
      );
    });
    req.on('error', fail);
    req.end();
  });
}

describe('browser bundle', () => {
  it('is written to web/dist with a source map and contains no Node-only code', () => {
    expect(bundle.file).toBe(join(WEB_DIST, 'tessera.js'));
    expect(existsSync(bundle.file + '.map')).toBe(true);
    const bytes = readFileSync(bundle.file);
    expect(bytes.length).toBe(bundle.bytes);
    const js = bytes.toString('utf8');
    expect(js).not.toMatch(/koffi/);
    expect(js).not.toMatch(/\bnode:/);
    expect(js).not.toMatch(/\brequire\(/);
    expect(js).toMatch(/export\s*\{[^}]*\binitWebGPU\b/);
    // Only Tessera's own sources, and none of the Node-side backends.
    expect(bundle.inputs.every((f) => f.startsWith('src/'))).toBe(true);
    for (const f of [
      'src/runtime/node_devices.ts',
      'src/runtime/cpu/cpu.ts',
      'src/runtime/webgpu/node.ts',
      'src/runtime/webgpu/worker.js',
      'src/index.ts',
    ]) {
      expect(bundle.inputs).not.toContain(f);
    }
    expect(bundle.inputs).toContain('src/runtime/webgpu/browser.ts');
  });

  it('fails the build, naming the import, when a module imports node:*, a Node built-in, koffi or webgpu', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-web-'));
    try {
      writeFileSync(join(dir, 'entry.ts'), "export { x } from './leaf.js';\n");
      writeFileSync(
        join(dir, 'leaf.ts'),
        "import { readFileSync } from 'node:fs';\nimport path from 'path';\nimport 'koffi';\nexport const x = [readFileSync, path];\n",
      );
      const err = await buildWeb({ entry: join(dir, 'entry.ts'), outdir: join(dir, 'out') }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      const msg = (err as Error).message;
      expect(msg).toMatch(/the browser bundle failed to build/);
      expect(msg).toMatch(/leaf\.ts:1:\d+: the browser bundle must not import 'node:fs'/);
      expect(msg).toMatch(/must not import 'path'/);
      expect(msg).toMatch(/must not import 'koffi'/);
      expect(existsSync(join(dir, 'out', 'tessera.js'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tessera web server', () => {
  it('serves web/ with content types, and index.html for /', async () => {
    const page = await rawGet('/');
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/^text\/html/);
    expect(page.body).toContain('Tessera — train a tiny GPT in your browser (WebGPU)');
    expect((await rawGet('/demo.js')).type).toMatch(/^text\/javascript/);
    expect((await rawGet('/dist/tessera.js')).type).toMatch(/^text\/javascript/);
    expect((await rawGet('/dist/tessera.js.map')).type).toMatch(/^application\/json/);
    expect((await rawGet('/sample.txt')).type).toMatch(/^text\/plain/);
    const head = await rawGet('/sample.txt', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect((await rawGet('/index.html', 'POST')).status).toBe(405);
  });

  it('answers 404 for missing files and for every path outside web/', async () => {
    expect((await rawGet('/missing.js')).status).toBe(404);
    for (const p of [
      '/../package.json',
      '/..%2fpackage.json',
      '/%2e%2e/package.json',
      '/dist/../../package.json',
      '/%2e%2e%2f%2e%2e%2fetc/passwd',
      '//etc/passwd',
    ]) {
      const r = await rawGet(p);
      expect(r.status, p).not.toBe(200);
      expect(r.body, p).not.toContain('"devDependencies"');
    }
    expect((await rawGet('/%E0%A4%A')).status).toBe(400);
  });
});

describe.skipIf(!existsSync(CHROMIUM))(`demo page in Chromium (${CHROMIUM}, WebGPU)`, () => {
  let browser: Browser;
  const logs: string[] = [];

  beforeAll(async () => {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
  });

  async function open(query: string): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
    await page.goto(`${server.url}/?${query}`);
    return page;
  }

  /** Open the demo with `query`, wait until it is done or failed; screenshot to `shot` if given. */
  async function runDemo(query: string, shot?: string) {
    const t0 = performance.now();
    const page = await open(query);
    try {
      await page.waitForFunction(
        () => {
          const s = (globalThis as unknown as PageGlobals).tessera;
          return s !== undefined && (s.done || s.error !== null);
        },
        undefined,
        { timeout: 150_000, polling: 250 },
      );
    } finally {
      if (shot) {
        mkdirSync(join(root, 'test-results'), { recursive: true });
        await page.screenshot({ path: join(root, shot), fullPage: true });
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const state = await page.evaluate(() => {
      const g = globalThis as unknown as PageGlobals;
      return {
        ...g.tessera!,
        status: g.document.getElementById('status').textContent!,
        shown: g.document.getElementById('sample').textContent!,
      };
    });
    return { page, seconds, state };
  }

  const steps = 8;
  const model = `steps=${steps}&autostart=1&layers=1&heads=4&width=32&block=16&batch=8&lr=0.003&gen=40`;
  let jitLosses: number[] | undefined;
  let jitSample: string | null | undefined;

  it('trains a tiny GPT with WebGPU (jit): the loss falls, the chart and status update, and it samples text', async () => {
    const { page, seconds, state: s } = await runDemo(model, 'test-results/web-demo.png');
    expect(s.error, logs.join('\n')).toBeNull();
    expect(s.done).toBe(true);
    expect(s.jit).toBe(true);
    expect(s.losses).toHaveLength(steps);
    expect(s.losses.every(Number.isFinite)).toBe(true);
    const tail = s.losses.slice(-3).reduce((a, b) => a + b, 0) / 3;
    expect(tail).toBeLessThan(s.losses[0]!);
    expect(s.losses[0]!).toBeGreaterThan(3); // about ln(vocab) for an untrained model
    expect(s.adapter).not.toBeNull();
    expect(s.adapterName).toBeTruthy();
    expect(s.status).toContain(`adapter: ${s.adapterName}`);
    expect(s.status).toMatch(
      new RegExp(`trained ${steps} steps: loss \\d+\\.\\d+ → \\d+\\.\\d+, \\d+\\.\\d ms/step`),
    );
    // The first call traces, the second records the kernels, the other six replay them.
    expect(s.status).toMatch(new RegExp(`jit: 2 traced, ${steps - 2} replayed, \\d+ launches per step`));
    expect(typeof s.sample).toBe('string');
    expect(s.sample!.startsWith('Call me ')).toBe(true);
    expect(s.sample!.length).toBe('Call me '.length + 40);
    expect(s.shown).toBe(s.sample);
    // The chart drew the loss curve: pixels in the line's colour (the page's --accent, #2f6fde).
    const line = await page.evaluate(() => {
      const c = (globalThis as unknown as PageGlobals).document.getElementById('chart');
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) {
        if (
          Math.abs(px[i]! - 47) < 40 &&
          Math.abs(px[i + 1]! - 111) < 40 &&
          Math.abs(px[i + 2]! - 222) < 40 &&
          px[i + 3]! > 128
        )
          n++;
      }
      return n;
    });
    expect(line).toBeGreaterThan(200);
    jitLosses = s.losses;
    jitSample = s.sample;
    console.log(
      `web demo: ${steps} steps (jit) on ${s.adapterName}: ${s.msPerStep!.toFixed(0)} ms/step, page done in ${seconds.toFixed(1)} s; bundle ${(bundle.bytes / 1024).toFixed(1)} KiB`,
    );
    await page.close();
  });

  it('trains to the same losses and sample with plain steps (?jit=0)', async () => {
    const { page, seconds, state: s } = await runDemo(`${model}&jit=0`);
    expect(s.error, logs.join('\n')).toBeNull();
    expect(s.jit).toBe(false);
    expect(s.status).toContain('plain steps');
    expect(jitLosses, 'needs the jit run above').toBeDefined();
    expect(s.losses).toHaveLength(steps);
    s.losses.forEach((v, i) => expect(v, `step ${i + 1}`).toBeCloseTo(jitLosses![i]!, 4));
    expect(s.sample).toBe(jitSample);
    console.log(
      `web demo: ${steps} plain steps: ${s.msPerStep!.toFixed(0)} ms/step, page done in ${seconds.toFixed(1)} s`,
    );
    await page.close();
  });

  it('shows a bad setting as an error on the page and in window.tessera.error', async () => {
    const page = await open('autostart=1&width=30&heads=4');
    await page.waitForFunction(
      () => (globalThis as unknown as PageGlobals).tessera?.error != null,
      undefined,
      { timeout: 60_000 },
    );
    const err = await page.evaluate(() => (globalThis as unknown as PageGlobals).tessera!.error);
    expect(err).toMatch(/width \(30\) must be divisible by heads \(4\)/);
    expect(await page.textContent('#error')).toBe(err);
    await page.close();
  });
});
