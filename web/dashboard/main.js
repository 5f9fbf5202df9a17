// @ts-check
// Tessera's live memory dashboard: device memory over time stacked by owner, the all-time peak, the
// largest live tensors and the time of each training step, fed by the server's event stream (/events,
// see src/viz/dashboard.ts). Plain browser JavaScript, served as is; uPlot comes from its package
// through the page's import map.
//
// For tests and the console: window.__dashboard = { connected, points, owners, devices, tensors, steps,
// error } (points: memory samples plotted; owners: the owner names in the chart legend).
import uPlot from 'uplot';

/** @typedef {{ owners: number[], total: number, peak: number }} DeviceSample */
/** @typedef {{ t: number, devices: Record<string, DeviceSample> }} MemorySample */
/** @typedef {{ label: string, owner: string, device: string, dtype: string, shape: number[], bytes: number }} TensorRow */
/** @typedef {{ t: number, device: string, bytes: number, owners: number[] }} PeakMarker */
/** @typedef {{ name: string, ms: number, calls: number }} KernelTime */
/** @typedef {{ step: number, t: number, ms: number, runMs: number, runs: number, launches: number, kernelMs: number, topKernels: KernelTime[], loss?: number }} StepRecord */
/** @typedef {{ owners: string[], sampleMs: number, maxPoints: number, samples: MemorySample[], steps: StepRecord[], peaks: PeakMarker[], tensors: TensorRow[] }} Snapshot */
/** @typedef {{ sample: MemorySample, tensors: TensorRow[], peaks: PeakMarker[], steps: StepRecord[] }} Tick */

/** One colour per owner (Tableau 10), so an owner looks the same in the chart and in the table. */
const COLORS = /** @type {Record<string, string>} */ ({
  parameter: '#4e79a7',
  gradient: '#f28e2b',
  optimizer: '#e15759',
  activation: '#76b7b2',
  'kv-cache': '#59a14f',
  workspace: '#edc948',
  tensor: '#b07aa1',
});
const PEAK_COLOR = '#1d232b';
const STEP_COLOR = '#4e79a7';
const RUN_COLOR = '#76b7b2';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Everything the page knows; replaced wholesale by each `history` message. */
const state = {
  /** @type {string[]} */ owners: [],
  sampleMs: 250,
  maxPoints: 3000,
  /** @type {MemorySample[]} */ samples: [],
  /** @type {StepRecord[]} */ steps: [],
  /** @type {PeakMarker[]} */ peaks: [],
  /** True while a /history refetch is in flight. */
  refetching: false,
};

const exposed = {
  connected: false,
  points: 0,
  /** @type {string[]} */ owners: [],
  /** @type {string[]} */ devices: [],
  tensors: 0,
  steps: 0,
  /** @type {string | null} */ error: null,
};
/** @type {any} */ (window).__dashboard = exposed;

/** @param {number} n bytes */
function fmtBytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${n < 0 ? '-' : ''}${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/** @param {number} ms */
function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms === 0) return '0';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

/** Width a chart should take: its container's, with a floor so a narrow window still shows something. */
function widthOf(/** @type {HTMLElement} */ el) {
  return Math.max(320, el.clientWidth);
}

// ---------------------------------------------------------------------------------------------------
// Memory: one chart per device. uPlot does not stack, so each owner's series is the running sum of the
// owners below it, and a band between neighbouring sums fills just that owner's layer. The legend shows
// each owner's own bytes (from the unstacked values), not the running sum.
// ---------------------------------------------------------------------------------------------------

/**
 * @typedef {{ plot: uPlot, box: HTMLElement, summary: HTMLElement, raw: number[][] }} MemoryChart
 * @type {Map<string, MemoryChart>}
 */
const memoryCharts = new Map();

/** Columns for uPlot: [time (s), stacked owners..., peak], plus the unstacked owner values. */
function memoryColumns(/** @type {string} */ device) {
  /** @type {number[]} */ const xs = [];
  /** @type {number[][]} */ const raw = state.owners.map(() => []);
  /** @type {number[]} */ const peak = [];
  for (const s of state.samples) {
    const d = s.devices[device];
    if (!d) continue;
    xs.push(s.t / 1000);
    d.owners.forEach((v, i) => raw[i]?.push(v));
    peak.push(d.peak);
  }
  const sum = new Array(xs.length).fill(0);
  const stacked = raw.map((col) => col.map((v, i) => (sum[i] += v)));
  return { data: /** @type {uPlot.AlignedData} */ ([xs, ...stacked, peak]), raw };
}

/** Triangles at the moments a device reached a new peak (uPlot draw hook). */
function drawPeakMarkers(/** @type {uPlot} */ u, /** @type {string} */ device) {
  const ctx = u.ctx;
  const r = 5 * devicePixelRatio;
  ctx.save();
  ctx.fillStyle = PEAK_COLOR;
  for (const p of state.peaks) {
    if (p.device !== device) continue;
    const x = u.valToPos(p.t / 1000, 'x', true);
    const y = u.valToPos(p.bytes, 'y', true);
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
    ctx.beginPath();
    ctx.moveTo(x, y - 2 * r);
    ctx.lineTo(x - r, y - 3.6 * r);
    ctx.lineTo(x + r, y - 3.6 * r);
    ctx.closePath();
    ctx.fill();
  }
  ctx.restore();
}

function memoryChart(/** @type {string} */ device) {
  let chart = memoryCharts.get(device);
  if (chart) return chart;
  const box = document.createElement('div');
  box.className = 'device';
  const title = document.createElement('h3');
  title.textContent = device;
  const summary = document.createElement('span');
  summary.className = 'summary';
  title.append(summary);
  box.append(title);
  $('devices').append(box);
  const owners = state.owners;
  /** @type {uPlot.Options} */
  const opts = {
    width: widthOf($('devices')),
    height: 300,
    cursor: { drag: { x: true, y: false } },
    scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.08 : 1] } },
    axes: [{}, { size: 80, values: (_u, splits) => splits.map(fmtBytes) }],
    series: [
      {},
      ...owners.map((o, i) => ({
        label: o,
        stroke: COLORS[o] ?? '#999',
        fill: `${COLORS[o] ?? '#999999'}b0`,
        width: 1,
        points: { show: false },
        value: (
          /** @type {uPlot} */ _u,
          /** @type {number} */ _v,
          /** @type {number} */ _s,
          /** @type {number | null} */ idx,
        ) => {
          // Away from the cursor the legend shows the newest value: what the device holds now.
          const col = chart?.raw[i] ?? [];
          return fmtBytes(col[idx ?? col.length - 1] ?? NaN);
        },
      })),
      {
        label: 'peak',
        stroke: PEAK_COLOR,
        width: 1.5,
        dash: [6, 4],
        points: { show: false },
        value: (u, v) => fmtBytes(v ?? u.data[u.data.length - 1]?.at(-1) ?? NaN),
      },
    ],
    // Band k fills between running sums k+1 and k: owner k's layer.
    bands: owners.slice(1).map((_o, i) => ({ series: /** @type {[number, number]} */ ([i + 2, i + 1]) })),
    hooks: { draw: [(u) => drawPeakMarkers(u, device)] },
  };
  const { data, raw } = memoryColumns(device);
  chart = { plot: new uPlot(opts, data, box), box, summary, raw };
  memoryCharts.set(device, chart);
  return chart;
}

function renderMemory() {
  // Devices that held memory at some point of the history (a device used and emptied before the
  // dashboard started would otherwise show an empty chart).
  const devices = new Set();
  for (const s of state.samples)
    for (const [d, v] of Object.entries(s.devices)) if (v.total > 0) devices.add(d);
  for (const device of devices) {
    const chart = memoryChart(device);
    const { data, raw } = memoryColumns(device);
    chart.raw = raw;
    chart.plot.setData(data);
    const last = state.samples.findLast((s) => s.devices[device])?.devices[device];
    if (last) chart.summary.textContent = `now ${fmtBytes(last.total)} · peak ${fmtBytes(last.peak)}`;
  }
  $('nodata').hidden = devices.size > 0;
  exposed.devices = [...devices];
  exposed.points = state.samples.length;
  exposed.owners = [...document.querySelectorAll('#devices .u-legend .u-series .u-label')]
    .map((e) => e.textContent ?? '')
    .filter((s) => state.owners.includes(s))
    .filter((s, i, all) => all.indexOf(s) === i);
}

// ---------------------------------------------------------------------------------------------------
// Largest live tensors.
// ---------------------------------------------------------------------------------------------------

function renderTensors(/** @type {TensorRow[]} */ rows) {
  const body = /** @type {HTMLTableSectionElement} */ ($('tensors').querySelector('tbody'));
  body.replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      const cells = [r.label, r.owner, r.dtype, `[${r.shape.join(', ')}]`, fmtBytes(r.bytes)];
      cells.forEach((text, i) => {
        const td = document.createElement('td');
        if (i === 0) {
          td.className = 'label';
          td.title = `${r.label} on ${r.device}`;
        }
        if (i === 1) {
          const chip = document.createElement('span');
          chip.className = 'chip';
          chip.style.background = COLORS[r.owner] ?? '#999';
          td.append(chip);
        }
        if (i === 4) td.className = 'num';
        td.append(text);
        tr.append(td);
      });
      return tr;
    }),
  );
  exposed.tensors = rows.length;
}

// ---------------------------------------------------------------------------------------------------
// Steps: wall time per step (line) and time inside program runs (bars); the slowest kernels of the last
// step when the trainer profiles kernels.
// ---------------------------------------------------------------------------------------------------

/** @type {uPlot | null} */
let stepPlot = null;

/**
 * Top of the step-time axis: the first steps compile kernels and can take 100x a steady step, which
 * would flatten everything else to the floor; so the axis stops at 3x the median step and such
 * outliers run off the top (their values are still in the legend on hover).
 */
function stepAxisMax(/** @type {number} */ max) {
  const ms = state.steps.map((s) => Math.max(s.ms, s.runMs)).sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)] ?? 0;
  const top = median > 0 ? Math.min(max, 3 * median) : max;
  return top > 0 ? top * 1.1 : 1;
}

function renderSteps() {
  const steps = state.steps;
  $('nosteps').hidden = steps.length > 0;
  exposed.steps = steps.length;
  if (steps.length === 0) return;
  const data = /** @type {uPlot.AlignedData} */ ([
    steps.map((s) => s.step),
    steps.map((s) => s.runMs),
    steps.map((s) => s.ms),
  ]);
  if (!stepPlot) {
    const bars = uPlot.paths.bars?.({ size: [0.7, 40] });
    stepPlot = new uPlot(
      {
        width: widthOf($('steps')),
        height: 220,
        scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, stepAxisMax(max)] } },
        axes: [{ label: 'step' }, { size: 70, values: (_u, splits) => splits.map(fmtMs) }],
        series: [
          { label: 'step' },
          {
            label: 'in runs',
            stroke: RUN_COLOR,
            fill: `${RUN_COLOR}99`,
            ...(bars ? { paths: bars } : {}),
            points: { show: false },
            value: (u, v, si) => fmtMs(v ?? u.data[si]?.at(-1) ?? NaN),
          },
          {
            label: 'step time',
            stroke: STEP_COLOR,
            width: 1.5,
            value: (u, v, si) => fmtMs(v ?? u.data[si]?.at(-1) ?? NaN),
          },
        ],
      },
      data,
      $('steps'),
    );
  } else stepPlot.setData(data);
  const last = steps[steps.length - 1];
  const table = /** @type {HTMLTableElement} */ ($('kernels'));
  table.hidden = !last || last.topKernels.length === 0;
  if (last && last.topKernels.length > 0) {
    /** @type {HTMLTableSectionElement} */ (table.querySelector('tbody')).replaceChildren(
      ...last.topKernels.map((k) => {
        const tr = document.createElement('tr');
        for (const [text, cls] of [
          [k.name, 'label'],
          [String(k.calls), 'num'],
          [fmtMs(k.ms), 'num'],
        ]) {
          const td = document.createElement('td');
          td.className = cls;
          td.textContent = text;
          tr.append(td);
        }
        return tr;
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// The stream.
// ---------------------------------------------------------------------------------------------------

/** Replace everything with a snapshot from the server (on connect, and when our copy grew too long). */
function applySnapshot(/** @type {Snapshot} */ snap) {
  state.owners = snap.owners;
  state.sampleMs = snap.sampleMs;
  state.maxPoints = snap.maxPoints;
  state.samples = snap.samples;
  state.steps = snap.steps;
  state.peaks = snap.peaks;
  renderMemory();
  renderTensors(snap.tensors);
  renderSteps();
}

/** Live points are appended; past 1.5x the server's bound, swap in its downsampled history instead. */
async function refetchHistory() {
  if (state.refetching) return;
  state.refetching = true;
  try {
    const res = await fetch('/history', { cache: 'no-store' });
    if (res.ok) applySnapshot(await res.json());
  } catch (e) {
    exposed.error = String(e);
  } finally {
    state.refetching = false;
  }
}

function applyTick(/** @type {Tick} */ tick) {
  state.samples.push(tick.sample);
  state.peaks.push(...tick.peaks);
  state.steps.push(...tick.steps);
  renderMemory();
  renderTensors(tick.tensors);
  if (tick.steps.length > 0) renderSteps();
  if (state.samples.length > state.maxPoints * 1.5 || state.steps.length > 3000) void refetchHistory();
}

function connect() {
  const status = $('status');
  const source = new EventSource('/events');
  source.addEventListener('history', (e) => {
    exposed.connected = true;
    status.textContent = 'live';
    status.className = 'status live';
    applySnapshot(JSON.parse(/** @type {MessageEvent} */ (e).data));
  });
  source.addEventListener('tick', (e) => applyTick(JSON.parse(/** @type {MessageEvent} */ (e).data)));
  // EventSource reconnects by itself; the server then sends the history again.
  source.onerror = () => {
    exposed.connected = false;
    status.textContent = 'disconnected — retrying…';
    status.className = 'status down';
  };
}

window.addEventListener('resize', () => {
  for (const c of memoryCharts.values()) c.plot.setSize({ width: widthOf($('devices')), height: 300 });
  stepPlot?.setSize({ width: widthOf($('steps')), height: 220 });
});
window.addEventListener('error', (e) => (exposed.error = String(e.message)));

connect();
