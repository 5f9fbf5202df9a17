// The live memory dashboard (src/viz): its telemetry aggregation, its server (page, uPlot from the
// package, SSE stream, history) and the page itself in headless Chromium while a tiny GPT trains on the
// native CPU backend.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDefaultDevice, manualSeed, setDefaultDevice, tensor } from '../../src/index.js';
import { emit, markStep, MEMORY_OWNERS, now } from '../../src/memory/events.js';
import { recordAlloc, recordFree, recordOwner, stats } from '../../src/memory/stats.js';
import { GPT } from '../../src/nn/gpt.js';
import { AdamW } from '../../src/optim/index.js';
import '../../src/runtime/node_devices.js';
import type { Dashboard, Snapshot } from '../../src/viz/index.js';
import { startDashboard } from '../../src/viz/index.js';
import { Telemetry } from '../../src/viz/telemetry.js';

const root = join(import.meta.dirname, '../..');
const CHROMIUM = '/usr/bin/chromium';

/** What the test reads of the page (window.__dashboard, set by web/dashboard/main.js). */
interface DashboardState {
  connected: boolean;
  points: number;
  owners: string[];
  devices: string[];
  tensors: number;
  steps: number;
  error: string | null;
}
/** The page globals the test touches, typed here because the project compiles without the DOM lib. */
interface PageGlobals {
  __dashboard?: DashboardState;
}
const pageState = () => (globalThis as unknown as PageGlobals).__dashboard!;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Telemetry (the dashboard aggregator)', () => {
  it('samples the highest moment of each interval, with owner changes, peaks and step records', () => {
    const tel = new Telemetry({ kernels: true });
    try {
      const device = 'viz-unit';
      const a = recordAlloc(device, 1000, 'tensor', 'f32', [250], 'w');
      recordOwner(a, 'parameter');
      // An arena that lives only between two ticks must still show up.
      const arena = recordAlloc(device, 4000, 'activation', 'u8', [4000], 'arena');
      recordFree(arena);
      emit({ type: 'run', ts: now(), dur: 3, device, kernels: 7, label: 'step' });
      emit({ type: 'kernel', ts: now(), dur: 1, device, name: 'matmul' });
      emit({ type: 'kernel', ts: now(), dur: 0.5, device, name: 'matmul' });
      emit({ type: 'kernel', ts: now(), dur: 2, device, name: 'softmax' });
      markStep(1, 10, 2.5);
      const t1 = tel.tick(1_000);
      const s1 = t1.sample.devices[device]!;
      const at = (o: (typeof MEMORY_OWNERS)[number]) => MEMORY_OWNERS.indexOf(o);
      expect(s1.total).toBe(5000);
      expect(s1.owners[at('parameter')]).toBe(1000);
      expect(s1.owners[at('activation')]).toBe(4000);
      expect(s1.peak).toBe(5000);
      expect(t1.peaks).toEqual([expect.objectContaining({ device, bytes: 5000 })]);
      expect(t1.steps).toEqual([
        expect.objectContaining({
          step: 1,
          ms: 10,
          runMs: 3,
          runs: 1,
          launches: 7,
          kernelMs: 3.5,
          loss: 2.5,
        }),
      ]);
      expect(t1.steps[0]!.topKernels.map((k) => [k.name, k.calls])).toEqual([
        ['softmax', 1],
        ['matmul', 2],
      ]);
      expect(t1.tensors.some((r) => r.label === 'w' && r.owner === 'parameter' && r.bytes === 1000)).toBe(
        true,
      );
      // The next interval starts from the current state: the arena is gone; no new peak, no new steps.
      const t2 = tel.tick(1_250);
      expect(t2.sample.devices[device]!.total).toBe(1000);
      expect(t2.peaks).toEqual([]);
      expect(t2.steps).toEqual([]);
      recordFree(a);
      const snap = tel.snapshot();
      expect(snap.samples.map((s) => s.t)).toEqual([1_000, 1_250]);
      expect(snap.steps).toHaveLength(1);
      expect(snap.owners).toEqual(MEMORY_OWNERS);
    } finally {
      tel.close();
    }
  });
});

describe('dashboard server', () => {
  let dash: Dashboard;
  beforeAll(async () => {
    dash = await startDashboard({ port: 0 });
  });
  afterAll(async () => {
    await dash?.close();
  });

  it('serves the page, its script, uPlot from the package, and the history as JSON', async () => {
    expect(dash.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const page = await fetch(`${dash.url}/`);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain('"uplot": "/vendor/uPlot.esm.js"');
    for (const [path, type] of [
      ['/main.js', /^text\/javascript/],
      ['/dashboard.css', /^text\/css/],
      ['/vendor/uPlot.esm.js', /^text\/javascript/],
      ['/vendor/uPlot.min.css', /^text\/css/],
    ] as const) {
      const r = await fetch(dash.url + path);
      expect(r.status, path).toBe(200);
      expect(r.headers.get('content-type'), path).toMatch(type);
      await r.arrayBuffer();
    }
    expect((await fetch(`${dash.url}/vendor/uPlot.esm.js`).then((r) => r.text())).includes('export')).toBe(
      true,
    );
    expect((await fetch(`${dash.url}/../package.json`)).status).toBe(404);
    expect((await fetch(`${dash.url}/main.js`, { method: 'POST' })).status).toBe(405);
    await sleep(600);
    const snap = (await (await fetch(`${dash.url}/history`)).json()) as Snapshot;
    expect(snap.owners).toEqual(MEMORY_OWNERS);
    expect(snap.samples.length).toBeGreaterThanOrEqual(2);
    expect(snap.sampleMs).toBe(250);
  });

  it('streams the history first, then a tick every interval', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${dash.url}/events`, { signal: ctl.signal });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while ((text.match(/event: tick/g) ?? []).length < 2) text += decoder.decode((await reader.read()).value);
    ctl.abort();
    const events = [...text.matchAll(/event: (\w+)\ndata: (.*)\n\n/g)].map(
      (m) => [m[1], JSON.parse(m[2]!)] as const,
    );
    expect(events[0]![0]).toBe('history');
    expect(events.slice(1, 3).map((e) => e[0])).toEqual(['tick', 'tick']);
    const tick = events[1]![1] as {
      sample: { t: number; devices: Record<string, unknown> };
      tensors: unknown[];
    };
    expect(tick.sample.t).toBeGreaterThan(0);
    expect(Array.isArray(tick.tensors)).toBe(true);
  });
});

describe.skipIf(!existsSync(CHROMIUM))(`dashboard page in Chromium (${CHROMIUM})`, () => {
  let browser: Browser;
  let dash: Dashboard;
  const prevDevice = getDefaultDevice();

  beforeAll(async () => {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    setDefaultDevice('cpu');
    dash = await startDashboard({ port: 0 });
  });
  afterAll(async () => {
    await browser?.close();
    await dash?.close();
    setDefaultDevice(prevDevice);
  });

  it('plots memory by owner while a tiny GPT trains, lists the largest tensors and the step times', async () => {
    const logs: string[] = [];
    // Train in the background, yielding between steps so the server can sample and stream.
    let stop = false;
    let trained = 0;
    const training = (async () => {
      manualSeed(3);
      const model = new GPT({ vocabSize: 32, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32 });
      const opt = new AdamW(model.parameters(), { lr: 3e-3 });
      const ids = Int32Array.from({ length: 4 * 16 }, (_, i) => (i * 7 + 1) % 32);
      const x = tensor(ids, { dtype: 'i32', shape: [4, 16] });
      const y = tensor(
        ids.map((v) => (v + 1) % 32),
        { dtype: 'i32', shape: [4, 16] },
      );
      for (let step = 1; !stop; step++) {
        const t0 = performance.now();
        const out = model.forward(x, y);
        out.loss!.backward();
        opt.step({ realize: [out.loss!] });
        markStep(step, performance.now() - t0, out.loss!.itemSync());
        trained = step;
        await sleep(30);
      }
    })();
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
      page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
      await page.goto(dash.url);
      await page.waitForFunction(
        () => {
          const s = (globalThis as unknown as PageGlobals).__dashboard;
          return s !== undefined && s.connected && s.points > 0 && s.steps > 0 && s.tensors > 0;
        },
        undefined,
        { timeout: 60_000, polling: 100 },
      );
      const first = await page.evaluate(pageState);
      await page.waitForFunction(
        (n) => (globalThis as unknown as PageGlobals).__dashboard!.points > n + 2,
        first.points,
        {
          timeout: 20_000,
        },
      );
      await sleep(1000); // a few more steps and samples for the screenshot
      const later = await page.evaluate(pageState);
      expect(later.error, logs.join('\n')).toBeNull();
      expect(later.points).toBeGreaterThan(first.points);
      expect(later.devices).toContain('cpu');
      // The legend names the owners (all of them, in stacking order).
      expect(later.owners).toEqual(
        expect.arrayContaining(['parameter', 'gradient', 'optimizer', 'activation']),
      );
      const legend = await page.$$eval('#devices .u-legend .u-series .u-label', (els) =>
        els.map((e) => e.textContent),
      );
      expect(legend).toEqual(expect.arrayContaining([...MEMORY_OWNERS, 'peak']));
      // The tensor table lists the largest live tensors, largest first.
      const rows = await page.$$eval('#tensors tbody tr', (trs) =>
        trs.map((tr) => [...tr.children].map((td) => td.textContent)),
      );
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.length).toBeLessThanOrEqual(10);
      expect(rows.every((r) => r.length === 5 && MEMORY_OWNERS.includes(r[1] as never))).toBe(true);
      expect(later.steps).toBeGreaterThan(2);
      // The chart drew filled areas: the memory canvas is not blank.
      const painted = await page.$eval('#devices canvas', (c) => (c as unknown as { width: number }).width);
      expect(painted).toBeGreaterThan(300);
      mkdirSync(join(root, 'test-results'), { recursive: true });
      await page.screenshot({ path: join(root, 'test-results/dashboard.png'), fullPage: true });
      console.log(
        `dashboard: ${trained} steps, ${later.points} points, ${later.tensors} tensors; cpu now ${stats().cpu?.current} B`,
      );
      await page.close();
    } finally {
      stop = true;
      await training;
    }
  });
});
