#!/usr/bin/env node
/**
 * A small OpenAI-compatible streaming completion server over llama.cpp (node-llama-cpp from
 * peers/llama-cpp, prebuilt CPU binary), the llama.cpp side of bench/serve_load.mjs:
 *
 *   node bench/peers/llama_cpp_server.mjs --model file.gguf [--port 0] [--host 127.0.0.1] [--sequences 16]
 *        [--threads 2] [--context 512] [--batch 512] [--kv f16|f32] [--model-id id]
 *
 * One LlamaContext with `sequences` parallel sequences (each with `--context` KV cells): node-llama-cpp
 * queues the tokens every active sequence wants evaluated and dispatches them together as one
 * llama_decode batch per cycle ("maximumParallelism"), so concurrent requests are batched by llama.cpp
 * itself. A request takes a free sequence (FIFO queue when all are busy), clears its history, evaluates
 * the prompt and samples token by token; the sequence goes back to the pool when the request ends.
 *
 * Endpoints: GET /health, GET /ready, GET /v1/models, POST /v1/completions (prompt: string, [string] or
 * an array of token ids; max_tokens; temperature (0 = greedy, the default here); top_p; top_k; seed;
 * stream; stream_options.include_usage; ignore_eos (llama.cpp server's flag: do not stop at
 * end-of-generation tokens)). Streaming uses OpenAI's SSE format, the same chunks as Tessera's
 * /v1/completions: one `text_completion` chunk per generated token, a final chunk with finish_reason,
 * the usage chunk when asked, then `data: [DONE]`. No authentication (loopback benchmark peer).
 *
 * Prints one line `listening http://HOST:PORT` on stdout once the model is loaded. Stops on SIGTERM/SIGINT.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEER = join(ROOT, 'peers', 'llama-cpp');
const PKG = join(PEER, 'node_modules', 'node-llama-cpp');

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[a.slice(2)] = argv[++i];
    else out[a.slice(2)] = true;
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
if (!args.model || args.model === true) {
  console.error('usage: node bench/peers/llama_cpp_server.mjs --model file.gguf [--port 0] [--sequences 16] [--threads 2] [--context 512] [--kv f16|f32]');
  process.exit(2);
}
const num = (v, d) => (v === undefined || v === true ? d : Number(v));
const opt = {
  model: resolve(String(args.model)),
  host: args.host && args.host !== true ? String(args.host) : '127.0.0.1',
  port: num(args.port, 0),
  sequences: num(args.sequences, 16),
  threads: num(args.threads, 2),
  context: num(args.context, 512),
  batch: num(args.batch, 512),
  kv: String(args.kv ?? 'f16').toUpperCase(),
  modelId: args['model-id'] && args['model-id'] !== true ? String(args['model-id']) : basename(String(args.model)).replace(/\.gguf$/i, ''),
};
if (!existsSync(join(PKG, 'package.json')))
  throw new Error('node-llama-cpp is not installed in peers/llama-cpp (npm ci --prefix peers/llama-cpp --omit=optional --ignore-scripts --no-audit --no-fund)');

const version = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8')).version;
const { getLlama } = await import(pathToFileURL(join(PKG, 'dist', 'index.js')).href);
const llama = await getLlama({
  gpu: false,
  build: 'never',
  usePrebuiltBinaries: true,
  skipDownload: true,
  progressLogs: false,
  maxThreads: opt.threads,
  logLevel: 'error',
  logger: (level, message) => process.stderr.write(`[llama.cpp ${level}] ${message.trimEnd()}\n`),
});
const model = await llama.loadModel({ modelPath: opt.model, gpuLayers: 0, useMmap: false });
const context = await model.createContext({
  contextSize: opt.context,
  batchSize: opt.batch,
  sequences: opt.sequences,
  threads: { ideal: opt.threads, min: opt.threads },
  flashAttention: false,
  experimentalKvCacheKeyType: opt.kv,
  experimentalKvCacheValueType: opt.kv,
  failedCreationRemedy: false,
  performanceTracking: false,
});
const free = [];
for (let i = 0; i < opt.sequences; i++) free.push(context.getSequence());
const waiting = [];
const acquire = () => (free.length ? Promise.resolve(free.pop()) : new Promise((r) => waiting.push(r)));
const release = (s) => {
  const next = waiting.shift();
  if (next) next(s);
  else free.push(s);
};
const vocabSize = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0;
const seqContext = context.contextSize;
let inFlight = 0;

class HttpError extends Error {
  constructor(status, message, param = null) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

function readBody(req) {
  return new Promise((res, rej) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => res(Buffer.concat(parts).toString('utf8')));
    req.on('error', rej);
  });
}

function sendJson(res, status, body) {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}

function promptTokens(prompt) {
  if (typeof prompt === 'string') return Array.from(model.tokenize(prompt, false));
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') return Array.from(model.tokenize(prompt[0], false));
  if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((t) => Number.isInteger(t) && t >= 0 && t < vocabSize)) return prompt;
  throw new HttpError(400, 'prompt must be a string, an array holding one string, or a non-empty array of token ids in the vocabulary', 'prompt');
}

async function completions(req, res) {
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch {
    throw new HttpError(400, 'the body is not JSON');
  }
  const ids = promptTokens(body.prompt);
  const maxTokens = body.max_tokens ?? 16;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) throw new HttpError(400, 'max_tokens must be a positive integer', 'max_tokens');
  if (ids.length + maxTokens > seqContext)
    throw new HttpError(400, `prompt (${ids.length}) + max_tokens (${maxTokens}) exceed the context of ${seqContext} tokens`, 'prompt');
  const sampling = {
    temperature: body.temperature ?? 0,
    ...(body.top_p != null ? { topP: body.top_p } : {}),
    ...(body.top_k != null ? { topK: body.top_k } : {}),
    ...(body.seed != null ? { seed: body.seed } : {}),
  };
  const ignoreEos = body.ignore_eos === true;
  const stream = body.stream === true;
  const includeUsage = body.stream_options?.include_usage === true;
  const id = `cmpl-${randomBytes(12).toString('hex')}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choices, usage) => ({ id, object: 'text_completion', created, model: opt.modelId, choices, ...(includeUsage ? { usage: usage ?? null } : {}) });
  let gone = false;
  res.on('close', () => {
    if (!res.writableFinished) gone = true;
  });
  if (stream) {
    res.socket?.setNoDelay(true);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
  }
  const t0 = performance.now();
  inFlight++;
  const seq = await acquire();
  let text = '';
  let n = 0;
  let finish = 'length';
  let ttft;
  try {
    await seq.clearHistory();
    if (!gone) {
      for await (const tok of seq.evaluate([...ids], { ...sampling, yieldEogToken: true })) {
        if (gone) {
          finish = 'cancelled';
          break;
        }
        if (!ignoreEos && model.isEogToken(tok)) {
          finish = 'stop';
          break;
        }
        ttft ??= performance.now() - t0;
        n++;
        const piece = model.detokenize([tok], false);
        text += piece;
        if (stream) res.write(`data: ${JSON.stringify(chunk([{ index: 0, text: piece, finish_reason: null, logprobs: null }]))}\n\n`);
        if (n >= maxTokens) break;
      }
    }
  } finally {
    release(seq);
    inFlight--;
  }
  const usage = { prompt_tokens: ids.length, completion_tokens: n, total_tokens: ids.length + n, time_to_first_token_ms: ttft };
  if (gone) return;
  if (stream) {
    res.write(`data: ${JSON.stringify(chunk([{ index: 0, text: '', finish_reason: finish, logprobs: null }]))}\n\n`);
    if (includeUsage) res.write(`data: ${JSON.stringify(chunk([], usage))}\n\n`);
    res.end('data: [DONE]\n\n');
  } else {
    sendJson(res, 200, { id, object: 'text_completion', created, model: opt.modelId, choices: [{ index: 0, text, finish_reason: finish, logprobs: null }], usage });
  }
}

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?', 1)[0];
  const route = `${req.method} ${path}`;
  const run = async () => {
    if (route === 'GET /health') return sendJson(res, 200, { status: 'ok' });
    if (route === 'GET /ready') return sendJson(res, 200, { status: 'ready' });
    if (route === 'GET /v1/models') return sendJson(res, 200, { object: 'list', data: [{ id: opt.modelId, object: 'model', owned_by: 'llama.cpp' }] });
    if (route === 'GET /stats')
      return sendJson(res, 200, { inFlight, freeSequences: free.length, waiting: waiting.length, sequences: opt.sequences, threads: opt.threads, contextPerSequence: seqContext, batchSize: context.batchSize, kv: opt.kv, nodeLlamaCpp: version, llamaCpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}` });
    if (route === 'POST /v1/completions') return await completions(req, res);
    throw new HttpError(404, `Unknown route ${route}`);
  };
  run().catch((e) => {
    const status = e instanceof HttpError ? e.status : 500;
    const body = { error: { message: String(e?.message ?? e), type: status === 500 ? 'server_error' : 'invalid_request_error', param: e?.param ?? null, code: null } };
    if (!res.headersSent) sendJson(res, status, body);
    else if (!res.writableEnded) res.end(`data: ${JSON.stringify(body)}\n\n`);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(opt.port, opt.host, () => {
  const a = server.address();
  console.log(`listening http://${opt.host}:${a.port}`);
  console.log(JSON.stringify({ peer: 'llama.cpp', node_llama_cpp: version, llama_cpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`, sequences: opt.sequences, threads: opt.threads, context_per_sequence: seqContext, batch_size: context.batchSize, kv_cache: opt.kv, flash_attention: false, system_info: llama.systemInfo }));
});

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  server.close();
  server.closeAllConnections();
  try {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
