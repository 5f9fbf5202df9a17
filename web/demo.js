// Tessera browser demo: train a character-level GPT on the page's text with WebGPU, chart the loss,
// then sample from the model. Plain browser JavaScript over the bundle (npm run build:web).
//
// URL parameters override the form (for tests and links): steps, layers, heads, width, block, batch,
// lr, gen (characters to sample), seed, prompt, jit (1: compile the step with jit, the default; 0: plain
// steps), autostart=1 (train as soon as the page is ready).
// State for tests and the console: window.tessera = { losses, sample, done, error, adapter, ... }.
import { initWebGPU, jit, manualSeed, nn, optim, tensor } from './dist/tessera.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  /** Training loss after each step. */
  losses: [],
  /** The generated text after training, else null. */
  sample: null,
  /** True once training and sampling finished. */
  done: false,
  /** The first error (name and message), shown on the page too. */
  error: null,
  /** The WebGPU adapter Tessera opened ({ vendor, architecture, description, features, limits }). */
  adapter: null,
  /** Human-readable adapter name, as shown in the status line. */
  adapterName: null,
  running: false,
  /** Mean milliseconds per training step (excluding the first two, which compile kernels). */
  msPerStep: null,
  /** Milliseconds of each step. */
  stepMs: [],
  /** Whether the step ran through jit (replayed kernels) or as plain steps. */
  jit: null,
  config: null,
};
window.tessera = state;

function showError(e) {
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  if (state.error === null) state.error = msg;
  $('error').textContent = state.error;
  console.error(e);
}
window.addEventListener('error', (ev) => showError(ev.error ?? ev.message));
window.addEventListener('unhandledrejection', (ev) => showError(ev.reason));

// ---- form and URL parameters ------------------------------------------------------------------------

const FIELDS = ['steps', 'layers', 'heads', 'width', 'block', 'batch', 'lr', 'prompt'];
for (const f of FIELDS) if (params.has(f)) $(f).value = params.get(f);

function readConfig() {
  const int = (id) => {
    const v = Number($(id).value);
    if (!Number.isInteger(v) || v <= 0)
      throw new Error(`${id} must be a positive integer, got '${$(id).value}'`);
    return v;
  };
  const cfg = {
    steps: int('steps'),
    layers: int('layers'),
    heads: int('heads'),
    width: int('width'),
    block: int('block'),
    batch: int('batch'),
    lr: Number($('lr').value),
    prompt: $('prompt').value,
    gen: params.has('gen') ? Number(params.get('gen')) : 200,
    seed: params.has('seed') ? Number(params.get('seed')) : 1337,
    jit: params.get('jit') !== '0',
  };
  if (!(cfg.lr > 0)) throw new Error(`learning rate must be positive, got '${$('lr').value}'`);
  if (cfg.width % cfg.heads !== 0)
    throw new Error(`width (${cfg.width}) must be divisible by heads (${cfg.heads})`);
  if (!Number.isInteger(cfg.gen) || cfg.gen < 0)
    throw new Error(`gen must be a non-negative integer, got '${params.get('gen')}'`);
  return cfg;
}

// ---- data: a character tokenizer and random windows ---------------------------------------------------

function charTokenizer(text) {
  const chars = [...new Set(Array.from(text))].sort((a, b) => a.codePointAt(0) - b.codePointAt(0));
  const index = new Map(chars.map((c, i) => [c, i]));
  return {
    vocabSize: chars.length,
    encode: (s) => Array.from(s, (c) => index.get(c)).filter((i) => i !== undefined),
    decode: (ids) => Array.from(ids, (i) => chars[i] ?? '').join(''),
  };
}

/** Random windows of `ids` (xorshift32, reproducible): inputs and the targets one token later. */
function batcher(ids, block, batch, seed) {
  let s = seed >>> 0 || 1;
  const rand = (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
  return () => {
    const x = new Int32Array(batch * block);
    const y = new Int32Array(batch * block);
    for (let b = 0; b < batch; b++) {
      const start = rand(ids.length - block - 1);
      x.set(ids.subarray(start, start + block), b * block);
      y.set(ids.subarray(start + 1, start + block + 1), b * block);
    }
    return { x, y };
  };
}

// ---- the loss chart ---------------------------------------------------------------------------------

function drawChart(losses, total) {
  const canvas = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 800;
  const h = canvas.clientHeight || 240;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const style = getComputedStyle(document.documentElement);
  const fg = style.getPropertyValue('--muted').trim() || '#888';
  const accent = style.getPropertyValue('--accent').trim() || '#2f6fde';
  const pad = { l: 48, r: 12, t: 14, b: 26 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  ctx.font = '11px ui-monospace, monospace';
  ctx.fillStyle = fg;
  ctx.strokeStyle = fg;
  ctx.lineWidth = 1;
  ctx.strokeRect(pad.l, pad.t, pw, ph);
  if (losses.length === 0) {
    ctx.fillText('loss (per step) appears here while training', pad.l + 10, pad.t + 20);
    return;
  }
  const finite = losses.filter(Number.isFinite);
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < 1e-6) {
    hi += 0.5;
    lo -= 0.5;
  }
  const n = Math.max(total, losses.length, 2);
  const X = (i) => pad.l + (i / (n - 1)) * pw;
  const Y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * ph;
  // Axes: three loss ticks and the step range.
  ctx.textAlign = 'right';
  for (const v of [hi, (hi + lo) / 2, lo]) ctx.fillText(v.toFixed(2), pad.l - 6, Y(v) + 4);
  ctx.textAlign = 'left';
  ctx.fillText('step 1', pad.l, h - 8);
  ctx.textAlign = 'right';
  ctx.fillText(`step ${n}`, pad.l + pw, h - 8);
  ctx.textAlign = 'center';
  ctx.fillText('training loss', pad.l + pw / 2, h - 8);
  ctx.strokeStyle = accent;
  ctx.lineWidth = 2;
  ctx.beginPath();
  losses.forEach((v, i) => (i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v))));
  ctx.stroke();
  if (losses.length === 1) {
    ctx.fillStyle = accent;
    ctx.fillRect(X(0) - 2, Y(losses[0]) - 2, 4, 4);
  }
}

// ---- training -----------------------------------------------------------------------------------------

function setStatus(lines) {
  $('status').textContent = [`adapter: ${state.adapterName ?? '(none)'}`, ...lines].join('\n');
}

async function train() {
  const cfg = readConfig();
  const text = $('text').value;
  const tok = charTokenizer(text);
  const ids = Int32Array.from(tok.encode(text));
  if (ids.length < cfg.block + 2)
    throw new Error(
      `the text has ${ids.length} characters; it needs more than the context (${cfg.block}) + 1`,
    );
  Object.assign(state, {
    losses: [],
    stepMs: [],
    sample: null,
    done: false,
    error: null,
    msPerStep: null,
    running: true,
    jit: cfg.jit,
    config: cfg,
  });
  $('error').textContent = '';
  $('sample').textContent = '';
  $('train').disabled = true;
  try {
    manualSeed(cfg.seed);
    const model = new nn.GPT({
      vocabSize: tok.vocabSize,
      blockSize: cfg.block,
      nLayer: cfg.layers,
      nHead: cfg.heads,
      nEmbd: cfg.width,
    });
    const opt = new optim.AdamW(model.parameters(), { lr: cfg.lr, weightDecay: 0.01 });
    const sched = new optim.LRScheduler(
      opt,
      optim.cosineWithWarmup({
        warmupSteps: Math.min(20, Math.floor(cfg.steps / 10)),
        totalSteps: cfg.steps,
        minLrRatio: 0.1,
      }),
    );
    const next = batcher(ids, cfg.block, cfg.batch, cfg.seed);
    const nParams = model.numParameters().toLocaleString();
    const about = `model: ${cfg.layers} layer${cfg.layers === 1 ? '' : 's'}, ${cfg.heads} head${cfg.heads === 1 ? '' : 's'}, width ${cfg.width}, context ${cfg.block}, batch ${cfg.batch}; ${nParams} parameters; vocab ${tok.vocabSize}; ${cfg.jit ? 'jit' : 'plain steps'}`;
    setStatus([about, 'compiling the training step…']);
    // One step: forward, backward, clipping and AdamW, realized as one schedule.
    const step = (x, y) => {
      const { loss } = model.forward(x, y);
      loss.backward();
      const norm = optim.clipGradNorm(model.parameters(), 1.0);
      opt.step({ realize: [loss, norm] });
      return loss;
    };
    // jit: the first call runs the step, the second records its kernels, later calls replay them.
    const trainStep = cfg.jit ? jit(step) : step;
    const shape = [cfg.batch, cfg.block];
    for (let i = 1; i <= cfg.steps; i++) {
      const t0 = performance.now();
      const b = next();
      const x = tensor(b.x, { dtype: 'i32', shape });
      const y = tensor(b.y, { dtype: 'i32', shape });
      const loss = trainStep(x, y);
      sched.step();
      const v = await loss.item();
      for (const t of [x, y, loss]) t.dispose();
      if (!Number.isFinite(v)) throw new Error(`training diverged at step ${i}: loss ${v}`);
      state.stepMs.push(performance.now() - t0);
      state.losses.push(v);
      const warm = state.stepMs.slice(2);
      state.msPerStep = warm.length
        ? warm.reduce((a, b) => a + b, 0) / warm.length
        : state.stepMs.reduce((a, b) => a + b, 0) / state.stepMs.length;
      setStatus([
        about,
        `step ${i}/${cfg.steps}  loss ${v.toFixed(4)}  ${state.msPerStep.toFixed(1)} ms/step`,
      ]);
      drawChart(state.losses, cfg.steps);
    }
    const jitNote = cfg.jit
      ? `; jit: ${trainStep.stats.traced} traced, ${trainStep.stats.replayed} replayed, ${trainStep.stats.launchesPerReplay} launches per step`
      : '';
    const first = state.losses[0];
    const last = state.losses[state.losses.length - 1];
    const trained = `trained ${cfg.steps} steps: loss ${first.toFixed(3)} → ${last.toFixed(3)}, ${state.msPerStep.toFixed(1)} ms/step${jitNote}`;
    setStatus([about, trained, `sampling ${cfg.gen} characters…`]);
    // Sample: continue the prompt (characters outside the vocabulary are dropped).
    let promptIds = tok.encode(cfg.prompt).slice(-cfg.block);
    if (promptIds.length === 0) promptIds = [ids[0]];
    const idx = tensor(Int32Array.from(promptIds), { dtype: 'i32', shape: [1, promptIds.length] });
    const t0 = performance.now();
    const out = await model.generateAsync(idx, cfg.gen, { temperature: 0.8, topK: 20, seed: cfg.seed });
    const all = await out.data();
    idx.dispose();
    out.dispose();
    state.sample = tok.decode(all);
    $('sample').textContent = state.sample;
    setStatus([
      about,
      trained,
      `sampled ${cfg.gen} characters in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    ]);
    state.done = true;
  } finally {
    state.running = false;
    $('train').disabled = false;
  }
}

// ---- start-up -------------------------------------------------------------------------------------------

async function main() {
  drawChart([], 1);
  const res = await fetch('./sample.txt');
  if (!res.ok) throw new Error(`could not load sample.txt: HTTP ${res.status}`);
  if (!$('text').value) $('text').value = await res.text();
  const info = await initWebGPU();
  state.adapter = info;
  state.adapterName =
    [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  if (info.features.includes('shader-f16')) state.adapterName += ' (shader-f16)';
  setStatus(['ready: press Train']);
  $('train').disabled = false;
  $('train').addEventListener('click', () => train().catch(showError));
  if (params.get('autostart') === '1') await train();
}

main().catch((e) => {
  showError(e);
  $('status').textContent = `adapter: ${state.adapterName ?? '(none)'}\nstopped: ${state.error}`;
});
