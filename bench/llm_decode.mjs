#!/usr/bin/env node
/**
 * LLM inference speed, Tessera side by side with llama.cpp on the same GGUF files, batch 1:
 *
 *   node bench/llm_decode.mjs [--quick] [--types F32,F16,Q8_0] [--threads 2] [--prompt 64] [--decode-prompt 8]
 *                             [--new 24] [--repeats 2] [--peers tessera,llama.cpp] [--retries 0] [--busy-threshold 0.25]
 *
 * The model: a random-weight Llama (dim 512, 8 layers, 8 heads, 4 KV heads, SwiGLU 1408, vocab 32000,
 * context 256, untied LM head: 56.4M parameters), with a programmatic SentencePiece vocabulary (<unk>,
 * <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then filler tokens, zero scores) so that llama.cpp
 * loads it. It is exported with exportGGUF at each --types storage (weight matrices only; norms stay
 * F32) into a temporary folder, in a child process.
 *
 * Every (peer, type) measurement is its own child process (this script with --worker):
 *   tessera    TESSERA_THREADS=t, device 'cpu' (else interp, printed). loadGGUFModel: Tessera expands
 *              every storage type to f32 today, so it runs the same f32 model for each type.
 *              prefill: forwardCached of a --prompt token prompt on a fresh KV cache, realized with
 *              the cache updates (first call untimed; best of --repeats);
 *              decode: generate([--decode-prompt tokens], { maxNewTokens: --new, temperature: 0 }),
 *              timestamps from onToken; the first 3 decode steps (jit trace, capture, first replay)
 *              are not timed, the rest are (per-token time = span / steps); best of --repeats runs.
 *   llama.cpp  node-llama-cpp (peers/llama-cpp, CPU prebuilt), 2 threads, KV cache f16 (as llama.cpp
 *              is normally run), flash attention off; prefillSpeed(prompt) and decodeSpeed(prompt, n)
 *              from test/helpers/llama_cpp.ts (transpiled at run time with esbuild).
 *
 * The limit: decode reads every weight matrix once per token, so tokens/s ≤ DRAM bandwidth / bytes
 * read per token. Bytes per token = all weights except the token-embedding table (one row of it is
 * read); the KV cache and activations are not counted (small here). Tessera's bytes are f32 for every
 * type; llama.cpp's are the stored type's. Bandwidth: the 2-thread STREAM triad of
 * bench/results/peak.json when present, else 25 GB/s.
 *
 * Writes bench/results/llm_decode.json and prints a Markdown table.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchVocabulary, promptIds as benchPromptIds } from './lib/sp_vocab.mjs';
import {
  BENCH_DIR,
  ROOT_DIR,
  commandLine,
  fmt,
  importTessera,
  machineInfo,
  parseArgs,
  pickDevice,
  readResult,
  runJsonChild,
  runJsonChildQuiet,
  tesseraBuildInfo,
  writeResult,
} from './lib/common.mjs';

const args = parseArgs();
const SELF = join(BENCH_DIR, 'llm_decode.mjs');
const QUICK = args.quick === true;
const num = (v, d) => (v === undefined || v === true ? d : Number(v));

export const CONFIG = {
  vocabSize: 32000,
  dim: 512,
  nLayer: 8,
  nHead: 8,
  nKVHead: 4,
  hiddenDim: 1408,
  maxSeqLen: 256,
  tieEmbeddings: false,
};
const ALL_TYPES = ['F32', 'F16', 'Q8_0'];
const BYTES_PER_ELEMENT = { F32: 4, F16: 2, BF16: 2, Q8_0: 34 / 32 };
const DEFAULT_BANDWIDTH_GBS = 25;

/** Parameter counts of CONFIG: total, in 2-D matrices, in the token-embedding table, in 1-D norms. */
export function paramCounts(c = CONFIG) {
  const hd = c.dim / c.nHead;
  const kv = c.nKVHead * hd;
  const perLayerMat = c.dim * c.dim * 2 + c.dim * kv * 2 + 3 * c.dim * c.hiddenDim;
  const perLayerNorm = 2 * c.dim;
  const embed = c.vocabSize * c.dim;
  const head = c.tieEmbeddings ? 0 : c.vocabSize * c.dim;
  const matrices = c.nLayer * perLayerMat + embed + head;
  const norms = c.nLayer * perLayerNorm + c.dim;
  return { total: matrices + norms, matrices, embed, head, norms };
}

/** Bytes read per decoded token: every weight except the embedding table (one row), at `type`. */
export function bytesPerToken(type, c = CONFIG) {
  const p = paramCounts(c);
  const readMatrices = p.matrices - p.embed + (c.tieEmbeddings ? p.embed : 0);
  return readMatrices * BYTES_PER_ELEMENT[type] + p.norms * 4 + c.dim * BYTES_PER_ELEMENT[type];
}

/** Deterministic token ids in the filler range (never special or byte tokens). */
/** Deterministic prompt ids in the filler range. */
const promptIds = (n, seed) => benchPromptIds(n, seed, CONFIG.vocabSize);

// ------------------------------------------------------------------------------------------------
// Workers: one job, one JSON line on stdout
// ------------------------------------------------------------------------------------------------

async function workerExport(dir, types) {
  const T = await importTessera();
  const { Llama } = await importTessera('nn/index.js');
  const { exportGGUF } = await importTessera('models/index.js');
  const { SentencePieceBPE, TokenType } = await importTessera('tokenizer/index.js');
  T.manualSeed(1234);
  const t0 = performance.now();
  const model = new Llama(CONFIG);
  let params = 0;
  for (const p of model.parameters()) params += p.shape.reduce((a, b) => a * b, 1);
  const tok = benchVocabulary({ SentencePieceBPE, TokenType }, CONFIG.vocabSize);
  const files = {};
  for (const type of types) {
    const file = join(dir, `llama56m-${type}.gguf`);
    await exportGGUF(file, { arch: 'llama', model }, { type, tokenizer: tok, name: 'tessera-bench-llama56m' });
    files[type] = { file, bytes: statSync(file).size };
  }
  return { params, files, export_s: (performance.now() - t0) / 1000 };
}

async function workerTessera(file, o) {
  const T = await importTessera();
  const { loadGGUFModel } = await importTessera('models/index.js');
  const { device, runtime, note } = pickDevice(T);
  // loadGGUFModel builds the model on the default device, then assigns weights made on opts.device:
  // the two must agree (they differ when the default is 'interp'), so make `device` the default.
  T.setDefaultDevice(device);
  const t0 = performance.now();
  const lm = loadGGUFModel(file, { device });
  const load_s = (performance.now() - t0) / 1000;
  const model = lm.model;
  model.eval();
  const weightDtypes = [...new Set(model.parameters().map((p) => p.dtype))];
  // prefill
  const ids = promptIds(o.prompt, 7);
  const prefillOnce = () => {
    const cache = model.createCache(1);
    const idx = T.tensor(ids, { dtype: 'i32', shape: [1, ids.length], device });
    const pos = T.tensor([0], { dtype: 'i32', device });
    const t = performance.now();
    const logits = T.noGrad(() => model.forwardCached(idx, pos, cache));
    T.realize(logits, ...cache.k, ...cache.v);
    const s = (performance.now() - t) / 1000;
    logits.dispose();
    idx.dispose();
    pos.dispose();
    cache.dispose();
    return s;
  };
  const firstPrefill = prefillOnce(); // compiles
  let prefill = Infinity;
  for (let r = 0; r < o.repeats; r++) prefill = Math.min(prefill, prefillOnce());
  // decode
  const dprompt = promptIds(o.decodePrompt, 11);
  const SKIP = 3; // decode steps 1..3: jit trace, capture, first replay
  let best = Infinity;
  let steps = 0;
  let tokensOut;
  const runs = [];
  for (let r = 0; r < o.repeats; r++) {
    const stamps = [];
    const t = performance.now();
    const out = model.generate([dprompt], { maxNewTokens: o.newTokens, temperature: 0, onToken: () => void stamps.push(performance.now()) });
    const total = (performance.now() - t) / 1000;
    tokensOut = out[0];
    if (stamps.length < SKIP + 2) throw new Error(`generate gave ${stamps.length} tokens, need ≥ ${SKIP + 2} (raise --new)`);
    steps = stamps.length - 1 - SKIP;
    const per = (stamps[stamps.length - 1] - stamps[SKIP]) / 1000 / steps;
    runs.push({ total_s: total, prefill_and_first_s: (stamps[0] - t) / 1000, untimed_steps_s: (stamps[SKIP] - stamps[0]) / 1000, per_token_s: per });
    best = Math.min(best, per);
  }
  return {
    peer: 'tessera',
    device,
    runtime,
    device_note: note,
    threads: Number(process.env.TESSERA_THREADS),
    weight_dtypes: weightDtypes,
    load_s,
    prefill: { tokens: ids.length, first_call_s: firstPrefill, seconds: prefill, tokens_per_s: ids.length / prefill },
    decode: { prompt_tokens: dprompt.length, new_tokens: o.newTokens, timed_steps: steps, seconds_per_token: best, tokens_per_s: 1 / best, runs },
    greedy_tokens: tokensOut,
  };
}

/** test/helpers/llama_cpp.ts transpiled to ESM under node_modules/.cache (inside the repository, so it finds peers/). */
async function importLlamaCppHelper() {
  const src = join(ROOT_DIR, 'test', 'helpers', 'llama_cpp.ts');
  const dir = join(ROOT_DIR, 'node_modules', '.cache', 'tessera-bench');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `llama_cpp.${process.pid}.mjs`);
  const { transformSync } = await import(pathToFileURL(join(ROOT_DIR, 'node_modules', 'esbuild', 'lib', 'main.js')).href);
  const js = transformSync(readFileSync(src, 'utf8'), { loader: 'ts', format: 'esm', target: 'node20' }).code;
  writeFileSync(out, js);
  try {
    return await import(pathToFileURL(out).href);
  } finally {
    rmSync(out, { force: true });
  }
}

async function workerLlamaCpp(file, o) {
  const { openLlamaCpp } = await importLlamaCppHelper();
  const peer = await openLlamaCpp({ threads: o.threads });
  if ('missing' in peer) throw new Error(peer.missing);
  try {
    const t0 = performance.now();
    const model = await peer.load(file, { contextSize: CONFIG.maxSeqLen, kvCacheType: 'f16' });
    const load_s = (performance.now() - t0) / 1000;
    const ids = promptIds(o.prompt, 7);
    const prefill = await model.prefillSpeed(ids, o.repeats);
    const dprompt = promptIds(o.decodePrompt, 11);
    const decode = await model.decodeSpeed(dprompt, o.newTokens, o.repeats);
    const greedy = await model.greedy(dprompt, Math.min(8, o.newTokens));
    return {
      peer: 'llama.cpp',
      version: peer.version,
      llama_cpp_release: peer.llamaCppRelease,
      system_info: peer.systemInfo,
      threads: model.threads,
      context_size: model.contextSize,
      kv_cache_type: 'f16',
      load_s,
      prefill: { tokens: prefill.tokens, seconds: prefill.seconds, tokens_per_s: prefill.tokensPerSecond },
      decode: { prompt_tokens: dprompt.length, new_tokens: o.newTokens, timed_steps: decode.tokens, seconds_per_token: decode.seconds / decode.tokens, tokens_per_s: decode.tokensPerSecond },
      greedy_tokens: greedy,
    };
  } finally {
    await peer.close();
  }
}

// ------------------------------------------------------------------------------------------------
// Parent
// ------------------------------------------------------------------------------------------------

function opts() {
  return {
    threadList: args.threads === undefined || args.threads === true ? [2] : String(args.threads).split(',').map(Number),
    prompt: num(args.prompt, 64),
    decodePrompt: num(args['decode-prompt'], 8),
    newTokens: num(args.new, QUICK ? 12 : 24),
    repeats: num(args.repeats, QUICK ? 1 : 2),
  };
}

function bandwidth() {
  const peak = readResult('peak.json');
  const s = peak?.stream?.['2'];
  const gbs = s?.triad_gbs ?? s?.copy_gbs;
  if (typeof gbs === 'number' && gbs > 0)
    return { gbs, source: `bench/results/peak.json stream (2 threads, triad best), measured ${peak.date}` };
  return { gbs: DEFAULT_BANDWIDTH_GBS, source: 'assumed (no bench/results/peak.json stream figure)' };
}

async function main() {
  const o = opts();
  const types = (args.types && args.types !== true ? String(args.types).split(',') : ALL_TYPES).map((t) => t.trim().toUpperCase());
  for (const t of types) if (!ALL_TYPES.includes(t)) throw new Error(`--types: unknown type ${t} (expected ${ALL_TYPES.join(', ')})`);
  const peers = args.peers && args.peers !== true ? String(args.peers).split(',') : ['tessera', 'llama.cpp'];
  const guard = { retries: num(args.retries, 0), threshold: num(args['busy-threshold'], 0.25) };
  const bw = bandwidth();
  const counts = paramCounts();
  console.log(`# LLM decode/prefill: Tessera vs llama.cpp, batch 1, ${o.threadList.join(' and ')} thread(s)`);
  console.log(`model: random-weight Llama ${JSON.stringify(CONFIG)}; parameters ${(counts.total / 1e6).toFixed(2)}M`);
  console.log(`prefill: ${o.prompt}-token prompt; decode: ${o.newTokens} new tokens after a ${o.decodePrompt}-token prompt; best of ${o.repeats}`);
  console.log(`bandwidth bound: ${bw.gbs} GB/s (${bw.source})`);
  console.log(`note: Tessera loads every GGUF storage type as f32 today (it reads f32 weights per token for every type)`);

  const dir = mkdtempSync(join(tmpdir(), 'tessera-llm-bench-'));
  const results = [];
  let exported;
  try {
    const ex = runJsonChild(process.execPath, [SELF, '--worker', 'export', '--dir', dir, '--types', types.join(',')], { cwd: ROOT_DIR });
    if (!ex.ok) throw new Error(`export failed: ${ex.error}\n${ex.stderr}`);
    exported = ex.result;
    console.log(`exported ${types.join(', ')} in ${fmt(exported.export_s, 1)} s (Tessera counts ${exported.params} parameters)`);
    for (const type of types) for (const threads of o.threadList) {
      const file = exported.files[type].file;
      for (const peer of peers) {
        const env = { ...process.env, TESSERA_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
        const a = [SELF, '--worker', peer, '--file', file, '--threads', threads, '--prompt', o.prompt, '--decode-prompt', o.decodePrompt, '--new', o.newTokens, '--repeats', o.repeats].map(String);
        const t0 = performance.now();
        const r = runJsonChildQuiet(process.execPath, a, { env, cwd: ROOT_DIR, timeoutMs: 10 * 60_000 }, guard);
        const s = ((performance.now() - t0) / 1000).toFixed(0);
        if (r.ok) {
          console.log(`  ${type} ${threads}t ${peer}: prefill ${fmt(r.result.prefill.tokens_per_s, 1)} tok/s, decode ${fmt(r.result.decode.tokens_per_s, 2)} tok/s (${s} s, others used ${fmt(r.foreign_cores, 2)} cores)`);
          results.push({ type, ...r.result, threads, foreign_cores: r.foreign_cores, attempts: r.attempts });
        } else {
          console.log(`  ${type} ${threads}t ${peer}: FAILED: ${r.error}\n${r.stderr}`);
          results.push({ type, threads, peer, error: r.error, stderr: r.stderr?.slice(-2000), foreign_cores: r.foreign_cores });
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const rows = types.flatMap((type) => o.threadList.map((threads) => {
    const ts = results.find((r) => r.type === type && r.threads === threads && r.peer === 'tessera' && !r.error);
    const lc = results.find((r) => r.type === type && r.threads === threads && r.peer === 'llama.cpp' && !r.error);
    let same = null;
    if (ts && lc) {
      const n = Math.min(ts.greedy_tokens.length, lc.greedy_tokens.length);
      same = 0;
      while (same < n && ts.greedy_tokens[same] === lc.greedy_tokens[same]) same++;
      same = `${same}/${n}`;
    }
    const tBytes = bytesPerToken('F32');
    const lBytes = bytesPerToken(type);
    const tBound = (bw.gbs * 1e9) / tBytes;
    const lBound = (bw.gbs * 1e9) / lBytes;
    const busy = (r) => (r && (r.foreign_cores ?? 0) > guard.threshold ? '†' : '');
    return {
      type,
      threads,
      greedy_tokens_agree: same,
      file_bytes: exported?.files[type]?.bytes,
      tessera_bytes_per_token: tBytes,
      llama_cpp_bytes_per_token: lBytes,
      tessera_bound_tokens_per_s: tBound,
      llama_cpp_bound_tokens_per_s: lBound,
      tessera_prefill_tokens_per_s: ts?.prefill.tokens_per_s ?? null,
      llama_cpp_prefill_tokens_per_s: lc?.prefill.tokens_per_s ?? null,
      tessera_decode_tokens_per_s: ts?.decode.tokens_per_s ?? null,
      llama_cpp_decode_tokens_per_s: lc?.decode.tokens_per_s ?? null,
      decode_ratio: ts && lc ? ts.decode.tokens_per_s / lc.decode.tokens_per_s : null,
      prefill_ratio: ts && lc ? ts.prefill.tokens_per_s / lc.prefill.tokens_per_s : null,
      tessera_pct_of_bound: ts ? (100 * ts.decode.tokens_per_s) / tBound : null,
      llama_cpp_pct_of_bound: lc ? (100 * lc.decode.tokens_per_s) / lBound : null,
      disturbed: { tessera: busy(ts) === '†', llama_cpp: busy(lc) === '†' },
      _busy: { t: busy(ts), l: busy(lc) },
    };
  }));

  console.log('');
  console.log('| type | threads | model MiB | Tessera prefill tok/s | llama.cpp prefill tok/s | Tessera decode tok/s | llama.cpp decode tok/s | decode ratio (Tessera / llama.cpp) | % of bandwidth bound: Tessera (f32 bytes) | % of bandwidth bound: llama.cpp | greedy tokens equal |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of rows) {
    console.log(
      `| ${r.type} | ${r.threads} | ${fmt(r.file_bytes / 2 ** 20, 1)} | ${fmt(r.tessera_prefill_tokens_per_s, 1)}${r._busy.t} | ${fmt(r.llama_cpp_prefill_tokens_per_s, 1)}${r._busy.l} | ` +
        `${fmt(r.tessera_decode_tokens_per_s, 2)}${r._busy.t} | ${fmt(r.llama_cpp_decode_tokens_per_s, 2)}${r._busy.l} | ${fmt(r.decode_ratio, 3)} | ` +
        `${fmt(r.tessera_pct_of_bound, 1)}% of ${fmt(r.tessera_bound_tokens_per_s, 1)} | ${fmt(r.llama_cpp_pct_of_bound, 1)}% of ${fmt(r.llama_cpp_bound_tokens_per_s, 1)} | ${r.greedy_tokens_agree ?? 'n/a'} |`,
    );
  }
  console.log(`\nbound = ${bw.gbs} GB/s / bytes read per token (weights except the embedding table; Tessera: f32 for every type, ${fmt(bytesPerToken('F32') / 2 ** 20, 1)} MiB). † = other processes used > ${guard.threshold} cores during the measurement.`);
  if (rows.some((r) => r.disturbed.tessera || r.disturbed.llama_cpp))
    console.log(`† figures: other processes were running. With ${Math.max(...o.threadList)} threads on a machine where another process holds a core, llama.cpp's spinning thread barriers (one per graph node) wait for the OS scheduler and its decode collapses (seen: ~95 tok/s at 1 thread vs ~12 at 2); compare the 1-thread rows, or rerun on a quiet machine.`);
  for (const r of rows) delete r._busy;

  const file = writeResult('llm_decode.json', {
    kind: 'llm_decode',
    date: new Date().toISOString(),
    command: commandLine('llm_decode.mjs'),
    quick: QUICK,
    machine: machineInfo(),
    tessera_build: tesseraBuildInfo(),
    model: { config: CONFIG, parameters: counts.total, parameters_tessera: exported?.params, counts, weights: 'random (manualSeed 1234), SentencePiece vocabulary built programmatically' },
    options: { ...o, types, peers },
    bandwidth: { gbs: bw.gbs, source: bw.source, bytes_per_token_note: 'all weights except the token-embedding table (one row read); KV cache and activations not counted' },
    notes: ['Tessera loads every GGUF storage type as f32 (F16 and Q8_0 are dequantized at load), so its decode reads f32 weights for every type.', 'llama.cpp: node-llama-cpp prebuilt CPU binary, KV cache f16, flash attention off.'],
    rows,
    results,
  });
  console.log(`wrote ${file}`);
  if (results.some((r) => r.error)) process.exitCode = 1;
}

async function worker() {
  const job = args.worker;
  const o = { threads: num(args.threads, 2), prompt: num(args.prompt, 64), decodePrompt: num(args['decode-prompt'], 8), newTokens: num(args.new, 24), repeats: num(args.repeats, 2) };
  let out;
  try {
    if (job === 'export') out = await workerExport(args.dir, String(args.types).split(','));
    else if (job === 'tessera') out = await workerTessera(args.file, o);
    else if (job === 'llama.cpp') out = await workerLlamaCpp(args.file, o);
    else throw new Error(`unknown worker ${job}`);
  } catch (e) {
    console.log(JSON.stringify({ error: String(e?.stack ?? e) }));
    process.exit(1);
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

if (args.worker) await worker();
else
  await main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
