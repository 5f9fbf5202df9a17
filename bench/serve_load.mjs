#!/usr/bin/env node
/**
 * Serving under load: `tessera serve` with continuous batching, the same server forced to batch size 1,
 * and llama.cpp batching parallel sequences, on the same GGUF, driven by this script's own streaming
 * client over loopback:
 *
 *   node bench/serve_load.mjs [--quick] [--levels 1,4,16,64] [--servers tessera,tessera-b1,llama.cpp]
 *                             [--threads 2] [--prompt-tokens 48] [--max-tokens 64] [--requests-per-stream 2]
 *                             [--min-requests 8] [--level-time-s 60] [--level-cap-s 150] [--budget-s 1500]
 *                             [--kv-cache-mb 256] [--max-prefill-tokens N] [--max-batched-tokens N] [--llama-kv f16] [--quiet-wait-s 30] [--busy-threshold 0.25]
 *                             [--out serve_load.json] [--merge] [--keep-dir] [--trace DIR]
 *
 * --trace DIR writes, per server and level, the measured requests' token arrival times
 * (DIR/<server>-<N>.requests.json: wall-clock ms since the epoch) and, for Tessera, the engine's step
 * trace (`tessera serve --step-trace`, DIR/<server>.steps.jsonl), to line client gaps up with steps.
 * --merge replaces only the servers measured now in an existing results file made with the same model
 * and request options (to rerun one server).
 *
 * The model: a random-weight Llama (dim 512, 8 layers, 8 heads, 4 KV heads, SwiGLU 1408, vocab 32000,
 * context 512, untied LM head: 56.4M parameters; --quick: dim 256, 4 layers, vocab 4096, context 256)
 * with a programmatic SentencePiece vocabulary (<unk>, <s>, </s>, 256 byte tokens, filler tokens `tokN`),
 * as in bench/llm_decode.mjs, exported once as F32 GGUF into a temporary folder (in a child process).
 * The LM head rows of the 259 special and byte tokens are zeroed: their logits are exactly 0 while the
 * largest of the ~32k filler logits is positive, so greedy decoding never emits end-of-sequence and every
 * request generates exactly max_tokens tokens on every server (Tessera's API has no `ignore_eos`; the
 * llama.cpp peer is sent `ignore_eos: true` as well). The client checks it: completion tokens (from the
 * streamed `usage`) below max_tokens are counted as incomplete.
 *
 * The servers (each a child process, TESSERA_THREADS / llama.cpp threads = --threads):
 *   tessera      node dist/cli/main.js serve --model F --port 0 --db TMP --max-batch 64 (continuous batching)
 *   tessera-b1   the same with --max-batch 1 (one sequence at a time: the no-batching baseline)
 *   llama.cpp    bench/peers/llama_cpp_server.mjs: node-llama-cpp, one context with `sequences` = the
 *                concurrency level (restarted per level), llama.cpp batching every active sequence's
 *                tokens into one llama_decode per cycle; f16 KV cache (--llama-kv), flash attention off.
 * A tenant and an API key are created first with `tessera tenants create` / `tessera keys create --quiet`.
 *
 * Per server and concurrency level N: a warm-up round (untimed; the same closed loop as below for the
 * batching servers, so the shape buckets the level uses are compiled; 2 requests for batch size 1; at most
 * --level-time-s), a wait of up to --quiet-wait-s for other processes to calm down, then N streams,
 * each issuing streaming /v1/completions requests back to back (temperature 0, a distinct 48-token
 * prompt of token ids per request, so no prefix-cache hits) until max(requests-per-stream * N,
 * min-requests) requests were issued or --level-time-s passed; requests still running at --level-cap-s
 * are aborted (reported as errors); once the whole run has lasted --budget-s, remaining levels are skipped.
 * Recorded per request from SSE chunk arrival times: time to first token
 * (request start to the first token chunk), every inter-token gap, completion tokens (usage), finish
 * reason. Per level: throughput = completion tokens of all requests / wall time of the level (first
 * request start to last request end), p50/p99 TTFT, p50/p99 inter-token latency (over all gaps of all
 * requests), and the server's CPU use (cores) from /proc.
 *
 * Goal (the serving issue): at 16 streams, continuous batching gives at least 4x the throughput of batch
 * size 1, at a p99 inter-token latency no worse than 2x the single-stream figure (tessera at 1 stream).
 *
 * Writes bench/results/serve_load.json and prints Markdown tables. --quick: the small model, levels 1
 * and 4, 16 tokens per request, a few requests: to validate the harness (about a minute).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BENCH_DIR,
  DIST_DIR,
  ROOT_DIR,
  commandLine,
  cpuSnapshot,
  fmt,
  importTessera,
  machineInfo,
  parseArgs,
  readResult,
  runJsonChild,
  tesseraBuildInfo,
  waitQuiet,
  writeResult,
} from './lib/common.mjs';
import { benchVocabulary, promptIds, SPECIAL_AND_BYTE_TOKENS } from './lib/sp_vocab.mjs';

const args = parseArgs();
const SELF = join(BENCH_DIR, 'serve_load.mjs');
const QUICK = args.quick === true;
const num = (v, d) => (v === undefined || v === true ? d : Number(v));
const list = (v, d) => (v === undefined || v === true ? d : String(v).split(',').map((s) => s.trim()).filter(Boolean));

export const FULL_CONFIG = { vocabSize: 32000, dim: 512, nLayer: 8, nHead: 8, nKVHead: 4, hiddenDim: 1408, maxSeqLen: 512, tieEmbeddings: false };
export const QUICK_CONFIG = { vocabSize: 4096, dim: 256, nLayer: 4, nHead: 4, nKVHead: 2, hiddenDim: 704, maxSeqLen: 256, tieEmbeddings: false };
/** <unk>, <s>, </s> and the 256 byte tokens: their LM-head rows are zeroed (never chosen by greedy decoding). */
const ALL_SERVERS = ['tessera', 'tessera-b1', 'llama.cpp'];
const SERVER_LABEL = { tessera: 'Tessera, continuous batching', 'tessera-b1': 'Tessera, --max-batch 1', 'llama.cpp': 'llama.cpp, parallel sequences' };



// ------------------------------------------------------------------------------------------------
// Worker: export the model (one JSON line on stdout)
// ------------------------------------------------------------------------------------------------

async function workerExport(dir, config) {
  const T = await importTessera();
  const { Llama } = await importTessera('nn/index.js');
  const { exportGGUF } = await importTessera('models/index.js');
  const { SentencePieceBPE, TokenType } = await importTessera('tokenizer/index.js');
  T.manualSeed(1234);
  const t0 = performance.now();
  const model = new Llama(config);
  let params = 0;
  for (const p of model.parameters()) params += p.shape.reduce((a, b) => a * b, 1);
  // No end-of-sequence under greedy decoding: zero the LM-head rows of the special and byte tokens.
  const head = model.lmHead.weight;
  const w = head.dataSync().slice();
  w.fill(0, 0, SPECIAL_AND_BYTE_TOKENS * config.dim);
  head.write(w);
  const tok = benchVocabulary({ SentencePieceBPE, TokenType }, config.vocabSize);
  const file = join(dir, `llama-serve-bench-F32.gguf`);
  await exportGGUF(file, { arch: 'llama', model }, { type: 'F32', tokenizer: tok, name: 'tessera-serve-bench' });
  return { params, file, bytes: statSync(file).size, export_s: (performance.now() - t0) / 1000 };
}

// ------------------------------------------------------------------------------------------------
// Servers as child processes
// ------------------------------------------------------------------------------------------------

const CLI = join(DIST_DIR, 'cli', 'main.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tesseraAdmin(db) {
  const run = (a) => {
    const r = spawnSync(process.execPath, [CLI, ...a, '--db', db], { cwd: ROOT_DIR, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`tessera ${a.join(' ')} failed (exit ${r.status}): ${r.stderr || r.stdout}`);
    return r.stdout.trim();
  };
  run(['tenants', 'create', 'bench']);
  const key = run(['keys', 'create', '--tenant', 'bench', '--quiet']).split('\n').pop().trim();
  if (!key) throw new Error('tessera keys create --quiet printed no key');
  return key;
}

/**
 * Start a server child; resolves with { url, proc, pid, info, log } once `pattern` (matched against
 * stdout + stderr) gives its URL and GET /ready answers 200.
 */
async function startChild(cmd, argv, { env, pattern, logFile, timeoutMs }) {
  const log = createWriteStream(logFile);
  const proc = spawn(cmd, argv, { cwd: ROOT_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let exited = null;
  const onData = (d) => {
    log.write(d);
    if (text.length < 1 << 20) text += d.toString();
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  proc.on('exit', (code, signal) => (exited = { code, signal }));
  const t0 = performance.now();
  let url;
  while (!url) {
    if (exited) throw new Error(`server exited during start-up (${JSON.stringify(exited)}):\n${text.slice(-3000)}`);
    if (performance.now() - t0 > timeoutMs) {
      proc.kill('SIGKILL');
      throw new Error(`server did not print its URL within ${timeoutMs / 1000} s:\n${text.slice(-3000)}`);
    }
    const m = pattern.exec(text);
    if (m) url = m[1];
    else await sleep(50);
  }
  for (;;) {
    if (exited) throw new Error(`server exited during start-up (${JSON.stringify(exited)}):\n${text.slice(-3000)}`);
    const r = await getJson(`${url}/ready`).catch((e) => ({ status: 0, error: e }));
    if (r.status === 200) break;
    if (performance.now() - t0 > timeoutMs) {
      proc.kill('SIGKILL');
      throw new Error(`server not ready within ${timeoutMs / 1000} s (last /ready: ${r.status}):\n${text.slice(-3000)}`);
    }
    await sleep(200);
  }
  const startup_s = (performance.now() - t0) / 1000;
  const stop = async () => {
    if (exited) return exited;
    proc.kill('SIGTERM');
    for (let i = 0; i < 300 && !exited; i++) await sleep(50);
    if (!exited) {
      proc.kill('SIGKILL');
      for (let i = 0; i < 100 && !exited; i++) await sleep(50);
    }
    log.end();
    return exited;
  };
  return { url, proc, pid: proc.pid, startup_s, output: () => text, exited: () => exited, stop };
}

function getJson(url, headers = {}) {
  return new Promise((res, rej) => {
    const req = httpRequest(url, { method: 'GET', headers, agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c) => (body += c));
      r.on('end', () => {
        let json;
        try {
          json = JSON.parse(body);
        } catch {
          /* not JSON */
        }
        res({ status: r.statusCode, json, body });
      });
    });
    req.on('error', rej);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/**
 * The server's engine-step histograms from /metrics (tessera_engine_step_seconds by kind, and the count
 * of steps that compiled a shape bucket), or null when unavailable.
 */
async function engineSteps(base) {
  try {
    const r = await getJson(`${base}/metrics`);
    if (r.status !== 200) return null;
    const out = { compiles: 0, shapes: {}, decode: { count: 0, sum: 0, le50: 0 }, mixed: { count: 0, sum: 0, le50: 0 } };
    for (const line of r.body.split('\n')) {
      let m;
      if ((m = /^tessera_engine_step_seconds_(count|sum)\{kind="(\w+)"\} (\S+)/.exec(line)) && out[m[2]]) out[m[2]][m[1]] = Number(m[3]);
      else if ((m = /^tessera_engine_step_seconds_bucket\{le="0\.05",kind="(\w+)"\} (\S+)/.exec(line)) && out[m[1]]) out[m[1]].le50 = Number(m[2]);
      else if ((m = /^tessera_engine_step_compiles_total\{shape="([^"]*)"\} (\S+)/.exec(line))) {
        out.compiles += Number(m[2]);
        out.shapes[m[1]] = Number(m[2]);
      }
    }
    return out;
  } catch {
    return null;
  }
}

/** Steps between two engineSteps() readings: per kind, count, mean duration and how many took over 50 ms. */
function stepDelta(a, b) {
  const kind = (k) => {
    const count = b[k].count - a[k].count;
    return { count, mean_ms: count ? ((b[k].sum - a[k].sum) / count) * 1000 : null, over_50ms: count - (b[k].le50 - a[k].le50) };
  };
  const compiled = Object.keys(b.shapes).filter((k) => !(k in a.shapes));
  return { decode: kind('decode'), mixed: kind('mixed'), compiles: b.compiles - a.compiles, compiled_shapes: compiled };
}

/** CPU seconds (user + system, all threads, plus its waited-for children: Tessera's C compiler runs) of process `pid` from /proc, or null. */
function procCpuSeconds(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number);
    return (f[11] + f[12] + f[13] + f[14]) / 100;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------------------------------------
// The client: one streaming completion, timed from SSE chunk arrivals
// ------------------------------------------------------------------------------------------------

/**
 * POST /v1/completions with stream: true. Resolves (never rejects) with
 * { ok, status, start, end, ttft_ms, gaps_ms[], token_chunks, completion_tokens, finish_reason, error }.
 */
function streamCompletion(base, { key, agent, body, inflight }) {
  return new Promise((resolve) => {
    const start = performance.now();
    const payload = JSON.stringify(body);
    const out = { ok: false, status: 0, start, end: start, ttft_ms: null, gaps_ms: [], token_at: [], token_chunks: 0, completion_tokens: null, finish_reason: null, error: null };
    let last;
    let done = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      inflight.delete(req);
      out.end = performance.now();
      if (error) out.error = String(error?.message ?? error);
      out.ok = !out.error && out.status === 200 && out.finish_reason !== null;
      resolve(out);
    };
    const onEvent = (data, now) => {
      if (data === '[DONE]') return;
      let j;
      try {
        j = JSON.parse(data);
      } catch {
        out.error = `unparsable event: ${data.slice(0, 200)}`;
        return;
      }
      if (j.error) {
        out.error = `error event: ${j.error.message ?? JSON.stringify(j.error)}`;
        return;
      }
      if (j.usage && typeof j.usage.completion_tokens === 'number') out.completion_tokens = j.usage.completion_tokens;
      const c = j.choices?.[0];
      if (!c) return;
      if (c.finish_reason != null) {
        out.finish_reason = c.finish_reason;
        return;
      }
      // A token chunk.
      out.token_chunks++;
      out.token_at.push(performance.timeOrigin + now);
      if (last === undefined) out.ttft_ms = now - start;
      else out.gaps_ms.push(now - last);
      last = now;
    };
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), accept: 'text/event-stream' };
    if (key) headers.authorization = `Bearer ${key}`;
    const u = new URL('/v1/completions', base);
    const req = httpRequest(u, { method: 'POST', headers, agent }, (res) => {
      out.status = res.statusCode;
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (d) => {
        const now = performance.now();
        buf += d;
        if (out.status !== 200) return;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          for (const line of ev.split('\n')) if (line.startsWith('data: ')) onEvent(line.slice(6), now);
        }
      });
      res.on('end', () => finish(out.status !== 200 ? `HTTP ${out.status}: ${buf.slice(0, 300)}` : out.finish_reason === null && !out.error ? 'stream ended without a finish_reason' : out.error));
      res.on('error', (e) => finish(e));
      res.on('aborted', () => finish('aborted'));
    });
    inflight.add(req);
    req.on('error', (e) => finish(e));
    req.end(payload);
  });
}

function percentile(xs, q) {
  if (xs.length === 0) return null;
  const s = Float64Array.from(xs).sort();
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Send `total` requests over `streams` concurrent streams (each back to back), until `deadline`. */
async function drive(base, { key, streams, total, deadline, cap, promptOf, maxTokens, ignoreEos, model }) {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const inflight = new Set();
  const results = [];
  let issued = 0;
  const capTimer = setTimeout(() => {
    for (const r of inflight) r.destroy(new Error("aborted at the time cap"));
  }, Math.max(0, cap - performance.now()));
  const loop = async () => {
    while (issued < total && performance.now() < deadline) {
      const k = issued++;
      const body = { model, prompt: promptOf(k), max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true }, ...(ignoreEos ? { ignore_eos: true } : {}) };
      const r = await streamCompletion(base, { key, agent, body, inflight });
      r.index = k;
      results.push(r);
    }
  };
  try {
    await Promise.all(Array.from({ length: streams }, loop));
  } finally {
    clearTimeout(capTimer);
    agent.destroy();
  }
  return results;
}

function summarize(results, maxTokens) {
  const ok = results.filter((r) => r.ok);
  const t0 = Math.min(...results.map((r) => r.start));
  const t1 = Math.max(...results.map((r) => r.end));
  const wall = (t1 - t0) / 1000;
  const tokens = results.reduce((a, r) => a + (r.completion_tokens ?? r.token_chunks), 0);
  const gaps = ok.flatMap((r) => r.gaps_ms);
  const ttfts = ok.map((r) => r.ttft_ms).filter((x) => x !== null);
  const chunks = ok.reduce((a, r) => a + r.token_chunks, 0);
  const ctoks = ok.reduce((a, r) => a + (r.completion_tokens ?? 0), 0);
  const errors = results.filter((r) => !r.ok);
  return {
    requests: results.length,
    requests_ok: ok.length,
    errors: errors.length,
    error_samples: [...new Set(errors.map((r) => r.error))].slice(0, 3),
    incomplete: ok.filter((r) => (r.completion_tokens ?? r.token_chunks) < maxTokens).length,
    finish_reasons: Object.fromEntries([...new Set(ok.map((r) => r.finish_reason))].map((f) => [f, ok.filter((r) => r.finish_reason === f).length])),
    completion_tokens: tokens,
    wall_s: wall,
    tokens_per_s: tokens / wall,
    ttft_ms: { p50: percentile(ttfts, 0.5), p99: percentile(ttfts, 0.99), max: ttfts.length ? Math.max(...ttfts) : null },
    itl_ms: { p50: percentile(gaps, 0.5), p99: percentile(gaps, 0.99), mean: gaps.length ? gaps.reduce((a, b) => a + b, 0) / gaps.length : null, count: gaps.length },
    e2e_s: { p50: percentile(ok.map((r) => (r.end - r.start) / 1000), 0.5), max: ok.length ? Math.max(...ok.map((r) => (r.end - r.start) / 1000)) : null },
    token_chunks_per_token: ctoks ? chunks / ctoks : null,
  };
}

// ------------------------------------------------------------------------------------------------
// Parent
// ------------------------------------------------------------------------------------------------

function options() {
  const levels = list(args.levels, QUICK ? ['1', '4'] : ['1', '4', '16', '64']).map(Number);
  const servers = list(args.servers, ALL_SERVERS);
  for (const s of servers) if (!ALL_SERVERS.includes(s)) throw new Error(`--servers: unknown server ${s} (expected ${ALL_SERVERS.join(', ')})`);
  return {
    levels,
    servers,
    threads: num(args.threads, 2),
    promptTokens: num(args['prompt-tokens'], QUICK ? 24 : 48),
    maxTokens: num(args['max-tokens'], QUICK ? 16 : 64),
    requestsPerStream: num(args['requests-per-stream'], 2),
    minRequests: num(args['min-requests'], QUICK ? 4 : 8),
    levelTimeS: num(args['level-time-s'], QUICK ? 15 : 60),
    levelCapS: num(args['level-cap-s'], QUICK ? 60 : 150),
    budgetS: num(args['budget-s'], QUICK ? 600 : 1500),
    kvCacheMb: num(args['kv-cache-mb'], 256),
    maxPrefillTokens: args['max-prefill-tokens'] === undefined ? undefined : num(args['max-prefill-tokens'], undefined),
    maxBatchedTokens: args['max-batched-tokens'] === undefined ? undefined : num(args['max-batched-tokens'], undefined),
    llamaKv: String(args['llama-kv'] ?? 'f16'),
    startupTimeoutS: num(args['startup-timeout-s'], 300),
    quietWaitS: num(args['quiet-wait-s'], QUICK ? 0 : 30),
    busyThreshold: num(args['busy-threshold'], 0.25),
    config: QUICK ? QUICK_CONFIG : FULL_CONFIG,
    trace: typeof args.trace === 'string' ? args.trace : undefined,
  };
}

async function measureServer(name, o, ctx) {
  const { file, dir, key } = ctx;
  const env = { ...process.env, TESSERA_THREADS: String(o.threads), OMP_NUM_THREADS: String(o.threads) };
  const levels = [];
  let server;
  const info = { name, label: SERVER_LABEL[name], startups: [] };
  const startTessera = async () => {
    const maxBatch = name === 'tessera-b1' ? 1 : 64;
    const argv = [CLI, 'serve', '--model', file, '--port', '0', '--db', join(dir, 'ledger.db'), '--log-level', 'warn', '--max-batch', String(maxBatch), '--kv-cache-mb', String(o.kvCacheMb), '--model-id', 'bench'];
    if (o.maxPrefillTokens !== undefined) argv.push('--max-prefill-tokens', String(o.maxPrefillTokens));
    if (o.maxBatchedTokens !== undefined) argv.push('--max-batched-tokens', String(o.maxBatchedTokens));
    if (o.trace) argv.push('--step-trace', join(o.trace, `${name}.steps.jsonl`));
    info.command = `TESSERA_THREADS=${o.threads} node dist/cli/main.js ${argv.slice(1).join(' ').replace(file, 'MODEL.gguf').replace(join(dir, 'ledger.db'), 'TMP.db')}`;
    return startChild(process.execPath, argv, { env, pattern: /serving '.*?' at (http:\/\/[^\s]+)\/v1/, logFile: join(dir, `${name}.log`), timeoutMs: o.startupTimeoutS * 1000 });
  };
  const startLlama = async (sequences) => {
    const argv = [join(BENCH_DIR, 'peers', 'llama_cpp_server.mjs'), '--model', file, '--port', '0', '--sequences', String(sequences), '--threads', String(o.threads), '--context', String(o.config.maxSeqLen), '--kv', o.llamaKv, '--model-id', 'bench'];
    info.command = `node bench/peers/llama_cpp_server.mjs --model MODEL.gguf --port 0 --sequences N --threads ${o.threads} --context ${o.config.maxSeqLen} --kv ${o.llamaKv} --model-id bench`;
    return startChild(process.execPath, argv, { env, pattern: /listening (http:\/\/[^\s]+)/, logFile: join(dir, `${name}-${sequences}.log`), timeoutMs: o.startupTimeoutS * 1000 });
  };
  try {
    for (const N of o.levels) {
      if ((performance.now() - ctx.t0) / 1000 > o.budgetS) {
        (info.skipped_levels ??= []).push(N);
        console.log(`  ${name} N=${N}: skipped (the run is over --budget-s ${o.budgetS})`);
        continue;
      }
      if (name === 'llama.cpp') {
        if (server) await server.stop();
        server = await startLlama(N);
        const m = /^\{"peer":"llama.cpp".*$/m.exec(server.output());
        if (m) info.peer = JSON.parse(m[0]);
        info.startups.push({ level: N, startup_s: server.startup_s });
      } else if (!server) {
        server = await startTessera();
        info.startups.push({ level: N, startup_s: server.startup_s });
      }
      const base = server.url;
      const common = { key: name === 'llama.cpp' ? undefined : key, maxTokens: o.maxTokens, ignoreEos: name === 'llama.cpp', model: 'bench' };
      // Warm-up (untimed), the same closed loop as the measured phase: the batching servers see the
      // same mixes of prefills and decodes (Tessera compiles one step per shape bucket).
      const warmStreams = name === 'tessera-b1' ? Math.min(N, 2) : N;
      const tw = performance.now();
      const warm = await drive(base, { ...common, streams: warmStreams, total: name === 'tessera-b1' ? warmStreams : Math.max(o.requestsPerStream * N, o.minRequests), deadline: tw + o.levelTimeS * 500, cap: tw + o.levelTimeS * 1000, promptOf: (k) => promptIds(o.promptTokens, 900_001 + N * 1000 + k, o.config.vocabSize) });
      const warmErrors = warm.filter((r) => !r.ok);
      const warm_s = (performance.now() - tw) / 1000;
      if (warmErrors.length) console.log(`  ${name} N=${N}: warm-up: ${warmErrors.length}/${warm.length} failed: ${warmErrors[0].error}`);
      const quiet = o.quietWaitS > 0 ? waitQuiet({ threshold: o.busyThreshold, maxSeconds: o.quietWaitS }) : null;
      // Measured.
      const total = Math.max(o.requestsPerStream * N, o.minRequests);
      const steps0 = name === 'llama.cpp' ? null : await engineSteps(base);
      const cpu0 = procCpuSeconds(server.pid);
      const own0 = process.cpuUsage();
      const snap0 = cpuSnapshot();
      const t0 = performance.now();
      const results = await drive(base, { ...common, streams: N, total, deadline: t0 + o.levelTimeS * 1000, cap: t0 + o.levelCapS * 1000, promptOf: (k) => promptIds(o.promptTokens, 1 + N * 1000 + k, o.config.vocabSize) });
      const secs = (performance.now() - t0) / 1000;
      const steps1 = name === 'llama.cpp' ? null : await engineSteps(base);
      const cpu1 = procCpuSeconds(server.pid);
      const own1 = process.cpuUsage();
      const snap1 = cpuSnapshot();
      const s = summarize(results, o.maxTokens);
      if (o.trace) writeFileSync(join(o.trace, `${name}-${N}.requests.json`), JSON.stringify(results.map((r) => ({ start: performance.timeOrigin + r.start, end: performance.timeOrigin + r.end, ok: r.ok, token_at: r.token_at }))));
      const serverCores = cpu0 !== null && cpu1 !== null ? (cpu1 - cpu0) / secs : null;
      const clientCores = (own1.user - own0.user + own1.system - own0.system) / 1e6 / secs;
      // Other processes = all busy CPU minus this process (client) and the server child.
      const allBusy = snap0 && snap1 ? (snap1.busy - snap0.busy) / 100 / secs : null;
      const other = allBusy !== null && serverCores !== null ? Math.max(0, allBusy - serverCores - clientCores) : null;
      const engine_steps = steps0 && steps1 ? stepDelta(steps0, steps1) : null;
      const row = { level: N, ...s, ...(engine_steps ? { engine_steps } : {}), warmup: { requests: warm.length, errors: warmErrors.length, seconds: warm_s }, server_cpu_cores: serverCores, client_cpu_cores: clientCores, other_cpu_cores: other, other_cpu_cores_before: quiet, disturbed: other !== null && other > o.busyThreshold };
      levels.push(row);
      console.log(
        `  ${name} N=${N}: ${s.requests_ok}/${s.requests} ok${s.incomplete ? `, ${s.incomplete} short` : ''}, ${fmt(s.tokens_per_s, 1)} tok/s over ${fmt(s.wall_s, 1)} s; ` +
          `TTFT p50 ${fmt(s.ttft_ms.p50, 0)} p99 ${fmt(s.ttft_ms.p99, 0)} ms; ITL p50 ${fmt(s.itl_ms.p50, 1)} p99 ${fmt(s.itl_ms.p99, 1)} ms; server ${fmt(serverCores, 2)} cores, client ${fmt(clientCores, 2)}, others ${fmt(other, 2)} (warm-up ${fmt(warm_s, 1)} s)`,
      );
      if (engine_steps) {
        const k = (x) => `${x.count} steps, mean ${fmt(x.mean_ms, 1)} ms, ${x.over_50ms} over 50 ms`;
        console.log(`    engine: decode-only ${k(engine_steps.decode)}; with prefill ${k(engine_steps.mixed)}; ${engine_steps.compiles} step(s) compiled a new shape${engine_steps.compiled_shapes.length ? ` (${engine_steps.compiled_shapes.join(', ')})` : ''}`);
      }
      if (s.errors) console.log(`    errors: ${s.error_samples.join(' | ')}`);
      if (server.exited()) throw new Error(`server exited (${JSON.stringify(server.exited())}):\n${server.output().slice(-3000)}`);
    }
  } catch (e) {
    info.error = String(e?.stack ?? e);
    console.log(`  ${name}: FAILED: ${info.error}`);
  } finally {
    if (server) {
      const ex = await server.stop();
      info.exit = ex;
      info.log_tail = server.output().slice(-1500);
    }
  }
  return { ...info, levels };
}

function table(results, o) {
  const lines = [];
  lines.push('| server | streams | requests ok | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | server cores | other processes, cores |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const N of o.levels)
    for (const r of results) {
      const l = r.levels.find((x) => x.level === N);
      if (!l) {
        lines.push(`| ${r.name} | ${N} | n/a | n/a | | | | | | |`);
        continue;
      }
      lines.push(
        `| ${r.name} | ${N} | ${l.requests_ok}/${l.requests}${l.incomplete ? ` (${l.incomplete} short)` : ''} | ${fmt(l.tokens_per_s, 1)}${l.disturbed ? ' †' : ''} | ${fmt(l.ttft_ms.p50, 0)} | ${fmt(l.ttft_ms.p99, 0)} | ${fmt(l.itl_ms.p50, 1)} | ${fmt(l.itl_ms.p99, 1)} | ${fmt(l.server_cpu_cores, 2)} | ${fmt(l.other_cpu_cores, 2)} |`,
      );
    }
  return lines.join('\n');
}

function goal(results) {
  const lvl = (name, N) => results.find((r) => r.name === name)?.levels.find((l) => l.level === N);
  const c16 = lvl('tessera', 16);
  const b16 = lvl('tessera-b1', 16);
  const c1 = lvl('tessera', 1);
  const l16 = lvl('llama.cpp', 16);
  const ratio = c16 && b16 ? c16.tokens_per_s / b16.tokens_per_s : null;
  const itl16 = c16?.itl_ms.p99 ?? null;
  const itl1 = c1?.itl_ms.p99 ?? null;
  const itlRatio = itl16 !== null && itl1 ? itl16 / itl1 : null;
  return {
    statement: 'at 16 streams, continuous batching ≥ 4x the throughput of batch size 1, at a p99 inter-token latency ≤ 2x the single-stream p99 (Tessera continuous batching at 1 stream)',
    throughput_ratio_16: ratio,
    throughput_met: ratio === null ? null : ratio >= 4,
    p99_itl_16_ms: itl16,
    p99_itl_1_ms: itl1,
    p99_itl_ratio: itlRatio,
    itl_met: itlRatio === null ? null : itlRatio <= 2,
    met: ratio === null || itlRatio === null ? null : ratio >= 4 && itlRatio <= 2,
    vs_llama_cpp_16: c16 && l16 ? c16.tokens_per_s / l16.tokens_per_s : null,
  };
}

async function main() {
  const o = options();
  if (o.trace) mkdirSync(o.trace, { recursive: true });
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` at the repository root first`);
  console.log(`# Serving under load: ${o.servers.join(', ')} at ${o.levels.join(', ')} concurrent streams, ${o.threads} threads`);
  console.log(`model: random-weight Llama ${JSON.stringify(o.config)}; prompts ${o.promptTokens} tokens, max_tokens ${o.maxTokens}, greedy`);
  const dir = mkdtempSync(join(tmpdir(), 'tessera-serve-bench-'));
  const results = [];
  let exported;
  const t0 = performance.now();
  try {
    const ex = runJsonChild(process.execPath, [SELF, '--worker', 'export', '--dir', dir, '--config', JSON.stringify(o.config)], { cwd: ROOT_DIR, timeoutMs: 10 * 60_000 });
    if (!ex.ok) throw new Error(`export failed: ${ex.error}\n${ex.stderr}`);
    exported = ex.result;
    console.log(`exported ${exported.file} (${fmt(exported.bytes / 2 ** 20, 1)} MiB, ${exported.params} parameters) in ${fmt(exported.export_s, 1)} s`);
    let key;
    if (o.servers.some((s) => s.startsWith('tessera'))) key = tesseraAdmin(join(dir, 'ledger.db'));
    for (const name of o.servers) {
      const ts = performance.now();
      const r = await measureServer(name, o, { file: exported.file, dir, key, t0 });
      r.seconds = (performance.now() - ts) / 1000;
      results.push(r);
    }
  } finally {
    if (args['keep-dir'] === true) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  // --merge: keep the other servers of the existing results file (same model and request options).
  const outName = args.out && args.out !== true ? String(args.out) : 'serve_load.json';
  let merged = [];
  if (args.merge === true) {
    const prev = readResult(outName);
    const same = prev && JSON.stringify(prev.model?.config) === JSON.stringify(o.config) && prev.options?.promptTokens === o.promptTokens && prev.options?.maxTokens === o.maxTokens && prev.options?.threads === o.threads;
    if (!same) console.log(`--merge: ${outName} is missing or was made with other model/request options; not merging`);
    else merged = prev.servers.filter((s) => !o.servers.includes(s.name)).map((s) => ({ ...s, from: s.from ?? { command: prev.command, date: prev.date } }));
  }
  for (const r of results) r.from = { command: commandLine('serve_load.mjs'), date: new Date().toISOString() };
  results.unshift(...merged);
  results.sort((a, b) => ALL_SERVERS.indexOf(a.name) - ALL_SERVERS.indexOf(b.name));
  o.levels = [...new Set([...o.levels, ...results.flatMap((r) => r.levels.map((l) => l.level))])].sort((a, b) => a - b);
  const g = goal(results);
  console.log('');
  console.log(table(results, o));
  console.log(`† = other processes used more than ${o.busyThreshold} cores during the level (server and client excluded): the figure is disturbed.`);
  console.log('');
  if (g.throughput_ratio_16 !== null)
    console.log(
      `goal at 16 streams: throughput continuous / batch-1 = ${fmt(g.throughput_ratio_16, 2)}x (need ≥ 4: ${g.throughput_met ? 'met' : 'NOT met'}); ` +
        `p99 ITL ${fmt(g.p99_itl_16_ms, 1)} ms vs single-stream ${fmt(g.p99_itl_1_ms, 1)} ms = ${fmt(g.p99_itl_ratio, 2)}x (need ≤ 2: ${g.itl_met ? 'met' : 'NOT met'})`,
    );
  else console.log('goal: not evaluated (needs tessera and tessera-b1 at 16 streams and tessera at 1)');
  const file = writeResult(outName, {
    kind: 'serve_load',
    date: new Date().toISOString(),
    command: merged.length ? [...new Set(results.map((r) => r.from.command))].join(' && ') : commandLine('serve_load.mjs'),
    quick: QUICK,
    seconds: (performance.now() - t0) / 1000,
    machine: machineInfo(),
    tessera_build: tesseraBuildInfo(),
    model: { config: o.config, parameters: exported?.params, file_bytes: exported?.bytes, type: 'F32', weights: 'random (manualSeed 1234); LM-head rows of the 259 special and byte tokens zeroed (no EOS under greedy decoding)' },
    options: { ...o, config: undefined },
    method: {
      client: 'this script, node:http over loopback, keep-alive; one streaming /v1/completions request at a time per stream, back to back',
      request: { prompt: `${o.promptTokens} token ids, distinct per request`, max_tokens: o.maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } },
      warmup: 'per level, untimed: the same closed loop as the measured phase (tessera, llama.cpp; at most half of --level-time-s for new requests), min(N, 2) requests (tessera-b1)',
      requests_per_level: `max(${o.requestsPerStream} x N, ${o.minRequests}), none started after ${o.levelTimeS} s, aborted at ${o.levelCapS} s`,
      throughput: 'completion tokens (streamed usage) of all requests / (last request end - first request start)',
      ttft: 'request start to the first token chunk',
      itl: 'gaps between consecutive token chunks of a request, pooled over all requests of the level',
    },
    servers: results,
    goal: g,
  });
  console.log(`wrote ${file}`);
  if (results.some((r) => r.error || r.levels.some((l) => l.errors))) process.exitCode = 1;
}

async function worker() {
  let out;
  try {
    if (args.worker === 'export') out = await workerExport(args.dir, JSON.parse(args.config));
    else throw new Error(`unknown worker ${args.worker}`);
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
