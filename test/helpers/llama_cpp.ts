/**
 * llama.cpp as a test and benchmark peer, through node-llama-cpp (installed in peers/llama-cpp/, CPU
 * prebuilt binary only; see peers/llama-cpp/README.md). Nothing here imports Tessera.
 *
 * node-llama-cpp is imported dynamically from peers/llama-cpp/node_modules, so the root project neither
 * depends on it nor needs its types: the few parts used are typed structurally below. When it is not
 * installed, `llamaCppMissing()` / `openLlamaCpp()` say why, so tests can `describe.skipIf(...)`.
 *
 * Logits: node-llama-cpp exposes no raw logits, only the softmax of them (`probabilities`, computed in
 * float32 by its addon over the whole vocabulary from llama.cpp's logits of that position, after the
 * sampler chain, which at temperature 0 with no penalties/bias/grammar leaves them unchanged). The
 * functions here return log(probability) = logit - logsumexp(logits): logits up to one constant per row.
 * Compare after subtracting each row's logsumexp (or max) on both sides. A probability that
 * underflows float32 (a logit ~100 below the row max) comes back as -Infinity.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Repository root: the nearest folder above this file holding peers/llama-cpp/package.json (this file is
 * test/helpers/llama_cpp.ts; a transpiled copy elsewhere under the repository finds the same root).
 */
export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));
/** The peer's own npm project. */
export const LLAMA_CPP_PEER_DIR = join(REPO_ROOT, 'peers', 'llama-cpp');

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'peers', 'llama-cpp', 'package.json'))) return dir;
    if (dirname(dir) === dir) return resolve(from, '..', '..');
  }
}
const PKG_DIR = join(LLAMA_CPP_PEER_DIR, 'node_modules', 'node-llama-cpp');
const BIN_DIR = join(LLAMA_CPP_PEER_DIR, 'node_modules', '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64');
export const LLAMA_CPP_INSTALL_COMMAND =
  'npm ci --prefix peers/llama-cpp --omit=optional --ignore-scripts --no-audit --no-fund';

/** Why the peer cannot be used here (not installed, other platform), or undefined when it can. Synchronous, for `skipIf`. */
export function llamaCppMissing(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return `node-llama-cpp peer: only the linux-x64 CPU binary is installed (this is ${process.platform}-${process.arch})`;
  }
  if (!existsSync(join(PKG_DIR, 'package.json'))) {
    return `node-llama-cpp is not installed in peers/llama-cpp (run: ${LLAMA_CPP_INSTALL_COMMAND})`;
  }
  if (!existsSync(join(BIN_DIR, 'llama-addon.node'))) {
    return `@node-llama-cpp/linux-x64 (the prebuilt CPU binary) is not installed in peers/llama-cpp (run: ${LLAMA_CPP_INSTALL_COMMAND})`;
  }
  return undefined;
}

// ---- the parts of node-llama-cpp's API used here (structural types; see its dist/**/*.d.ts) ----

interface NlcProbabilitiesOutput {
  next: { token?: number | null; probabilities?: Map<number, number> };
}
type NlcControlledItem =
  | number
  | [number, { generateNext?: { token?: boolean; probabilities?: boolean; options?: NlcSampleOptions } }];
interface NlcSampleOptions {
  temperature?: number;
  minP?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}
interface NlcSequence {
  readonly nextTokenIndex: number;
  readonly contextSize: number;
  clearHistory(): Promise<void>;
  controlledEvaluate(input: NlcControlledItem[]): Promise<Array<NlcProbabilitiesOutput | undefined>>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  evaluate(
    tokens: number[],
    options?: NlcSampleOptions & { yieldEogToken?: boolean },
  ): AsyncGenerator<number, void, void | number | number[]>;
  dispose(): Promise<void>;
}
interface NlcContext {
  readonly contextSize: number;
  readonly batchSize: number;
  readonly currentThreads: number;
  readonly idealThreads: number;
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
interface NlcModelTokens {
  readonly bos: number | null;
  readonly eos: number | null;
  readonly shouldPrependBosToken: boolean;
}
interface NlcModel {
  readonly tokens: NlcModelTokens;
  readonly trainContextSize: number;
  readonly vocabularyType: string;
  readonly fileInfo: { metadata: Record<string, unknown> };
  tokenize(text: string, specialTokens?: boolean): number[];
  detokenize(tokens: readonly number[], specialTokens?: boolean): string;
  isEogToken(token: number | undefined): boolean;
  createContext(options: Record<string, unknown>): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  readonly gpu: string | false;
  readonly buildType: string;
  readonly maxThreads: number;
  readonly cpuMathCores: number;
  readonly llamaCppRelease: { repo: string; release: string };
  readonly systemInfo: string;
  loadModel(options: Record<string, unknown>): Promise<NlcModel>;
  dispose(): Promise<void>;
}
interface NlcModule {
  getLlama(options: Record<string, unknown>): Promise<NlcLlama>;
}

// ---- the helper's API ----

export interface LlamaCppOpenOptions {
  /** Threads for llama.cpp (getLlama maxThreads and each context's threads). Default 2. */
  threads?: number;
  /** llama.cpp log level: 'disabled' | 'fatal' | 'error' | 'warn' | 'info' | 'log' | 'debug'. Default 'error'. Messages at or above it are kept in `peer.logs`. */
  logLevel?: string;
}

export interface LlamaCppLoadOptions {
  /** Context size in tokens (llama.cpp may round it up to a multiple of 256). Default 256. */
  contextSize?: number;
  /** Tokens per decode batch; must be ≥ the longest prompt for a single-batch prefill. Default = contextSize. */
  batchSize?: number;
  /** Threads for this context. Default: the peer's. */
  threads?: number;
  /**
   * KV-cache element type. Default 'f32' (node-llama-cpp's own default is F16, which rounds K and V to
   * half precision, ~1e-3 relative: wrong for an exact comparison with an f32 implementation).
   * Benchmarks may pass 'f16' to measure llama.cpp as usually configured.
   */
  kvCacheType?: 'f32' | 'f16';
  /** Flash attention (ggml's fused CPU kernel; changes summation order). Default false. */
  flashAttention?: boolean;
}

export interface LlamaCppTokenizeOptions {
  /** Parse special-token text (e.g. `<s>`) into special tokens. Default false. */
  special?: boolean;
  /** Prepend the model's BOS token (only if it has one). Default false: the text's tokens alone. */
  addBos?: boolean;
}

export interface LlamaCppSpeed {
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface LlamaCppModel {
  readonly path: string;
  /** Number of entries in tokenizer.ggml.tokens. */
  readonly vocabSize: number;
  /** The context's actual size (may exceed the requested one). */
  readonly contextSize: number;
  readonly batchSize: number;
  readonly threads: number;
  readonly bos: number | null;
  readonly eos: number | null;
  /** Whether llama.cpp would prepend BOS (tokenizer.ggml.add_bos_token, or the vocabulary type's default). */
  readonly addBosByDefault: boolean;
  /** llama.cpp's vocabulary type as node-llama-cpp names it ('spm', 'bpe', ...). */
  readonly vocabularyType: string;
  /** Tokenize with llama.cpp's tokenizer (common_tokenize with add_special = false; BOS only when asked). */
  tokenize(text: string, options?: LlamaCppTokenizeOptions): number[];
  /** llama_detokenize(remove_special = false, unparse_special = special). */
  detokenize(ids: readonly number[], options?: { special?: boolean }): string;
  /** Log-probabilities (= logits − logsumexp) of the token after `tokens`, length vocabSize. Evaluates from an empty cache. */
  nextTokenLogits(tokens: readonly number[]): Promise<Float32Array>;
  /** Log-probabilities after every prefix: row i is for the token after tokens[0..i]. One evaluation from an empty cache. */
  allPositionLogits(tokens: readonly number[]): Promise<Float32Array[]>;
  /**
   * Greedy decoding (temperature 0: argmax, ties to the lowest id; no repeat/DRY penalty, bias, grammar,
   * top-k/p or min-p): the `n` tokens generated after `tokens`, from an empty cache. End-of-generation
   * tokens are returned like any other and decoding goes on past them unless `stopAtEog`.
   */
  greedy(tokens: readonly number[], n: number, options?: { stopAtEog?: boolean }): Promise<number[]>;
  /** Prefill speed: evaluate `tokens` in one batch from an empty cache (no sampling), best of `repeats` (default 3). */
  prefillSpeed(tokens: readonly number[], repeats?: number): Promise<LlamaCppSpeed>;
  /** Decode speed: after an untimed prefill of `tokens`, generate `n` tokens greedily one at a time; best of `repeats` (default 3). */
  decodeSpeed(tokens: readonly number[], n: number, repeats?: number): Promise<LlamaCppSpeed>;
  close(): Promise<void>;
}

export interface LlamaCppPeer {
  /** node-llama-cpp's version (from its package.json). */
  readonly version: string;
  /** The llama.cpp release the prebuilt binary was built from, as node-llama-cpp reports it. */
  readonly llamaCppRelease: string;
  readonly threads: number;
  /** llama.cpp's system info line (CPU features). */
  readonly systemInfo: string;
  /** llama.cpp log messages seen so far (level ≥ the open option's logLevel). */
  readonly logs: string[];
  load(ggufPath: string, options?: LlamaCppLoadOptions): Promise<LlamaCppModel>;
  close(): Promise<void>;
}

const GREEDY: NlcSampleOptions = { temperature: 0 };

function toLogProbs(probs: Map<number, number> | undefined, vocabSize: number): Float32Array {
  if (probs === undefined) throw new Error('llama.cpp returned no probabilities');
  if (probs.size !== vocabSize)
    throw new Error(
      `llama.cpp returned ${probs.size} probabilities, expected ${vocabSize} (the sampler chain trimmed the candidates?)`,
    );
  const out = new Float32Array(vocabSize).fill(-Infinity);
  for (const [token, p] of probs) out[token] = Math.log(p);
  return out;
}

/** Opens node-llama-cpp's prebuilt CPU binary (never builds, never downloads), or says why it cannot. */
export async function openLlamaCpp(
  options: LlamaCppOpenOptions = {},
): Promise<LlamaCppPeer | { missing: string }> {
  const missing = llamaCppMissing();
  if (missing !== undefined) return { missing };
  const threads = options.threads ?? 2;
  const version = (JSON.parse(readFileSync(join(PKG_DIR, 'package.json'), 'utf8')) as { version: string })
    .version;
  let mod: NlcModule;
  try {
    mod = (await import(pathToFileURL(join(PKG_DIR, 'dist', 'index.js')).href)) as NlcModule;
  } catch (e) {
    return { missing: `node-llama-cpp failed to import: ${(e as Error).message}` };
  }
  const logs: string[] = [];
  let llama: NlcLlama;
  try {
    llama = await mod.getLlama({
      gpu: false, // CPU only: the GPU variants are not installed
      build: 'never', // never compile llama.cpp from source
      usePrebuiltBinaries: true,
      skipDownload: true, // never fetch llama.cpp's source
      progressLogs: false,
      maxThreads: threads,
      logLevel: options.logLevel ?? 'error',
      logger: (level: string, message: string) => {
        logs.push(`[${level}] ${message.trimEnd()}`);
      },
    });
  } catch (e) {
    return { missing: `node-llama-cpp could not load its prebuilt CPU binary: ${(e as Error).message}` };
  }
  const models = new Set<LlamaCppModel>();

  async function load(ggufPath: string, lo: LlamaCppLoadOptions = {}): Promise<LlamaCppModel> {
    const model = await llama.loadModel({
      modelPath: ggufPath,
      gpuLayers: 0,
      useMmap: false,
      checkTensors: true,
    });
    const ctxThreads = lo.threads ?? threads;
    const requestedContext = lo.contextSize ?? 256;
    let context: NlcContext;
    try {
      const kv = lo.kvCacheType === 'f16' ? 'F16' : 'F32';
      context = await model.createContext({
        contextSize: requestedContext,
        batchSize: lo.batchSize ?? requestedContext,
        sequences: 1,
        threads: { ideal: ctxThreads, min: ctxThreads },
        flashAttention: lo.flashAttention ?? false,
        experimentalKvCacheKeyType: kv,
        experimentalKvCacheValueType: kv,
        failedCreationRemedy: false,
        performanceTracking: false,
      });
    } catch (e) {
      await model.dispose();
      throw e;
    }
    const sequence = context.getSequence();
    const tokensMeta = model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: unknown[] } } };
    const vocabSize = tokensMeta.tokenizer?.ggml?.tokens?.length ?? NaN;
    if (!Number.isInteger(vocabSize)) {
      await context.dispose();
      await model.dispose();
      throw new Error(`${ggufPath}: no tokenizer.ggml.tokens array`);
    }

    function checkFits(n: number): void {
      if (n > sequence.contextSize)
        throw new Error(
          `${n} tokens do not fit the context (${sequence.contextSize}); load with a larger contextSize`,
        );
    }
    function checkBatch(n: number): void {
      if (n > context.batchSize)
        throw new Error(
          `${n} prompt tokens exceed the batch size (${context.batchSize}); load with a larger batchSize`,
        );
    }
    function checkIds(tokens: readonly number[]): void {
      for (const t of tokens)
        if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
          throw new Error(`token id ${t} is outside the vocabulary (0..${vocabSize - 1})`);
    }

    async function runPositions(tokens: readonly number[], which: 'last' | 'all'): Promise<Float32Array[]> {
      if (tokens.length === 0) throw new Error('need at least one token');
      checkIds(tokens);
      checkFits(tokens.length);
      await sequence.clearHistory();
      const items: NlcControlledItem[] = tokens.map((t, i) =>
        which === 'all' || i === tokens.length - 1
          ? [t, { generateNext: { probabilities: true, options: GREEDY } }]
          : t,
      );
      const out = await sequence.controlledEvaluate(items);
      const rows: Float32Array[] = [];
      for (let i = which === 'all' ? 0 : tokens.length - 1; i < tokens.length; i++)
        rows.push(toLogProbs(out[i]?.next.probabilities, vocabSize));
      return rows;
    }

    async function generate(
      tokens: readonly number[],
      n: number,
      stopAtEog: boolean,
      onToken?: (index: number) => void,
    ): Promise<number[]> {
      if (tokens.length === 0) throw new Error('need at least one prompt token');
      checkIds(tokens);
      checkFits(tokens.length + n);
      await sequence.clearHistory();
      const outTokens: number[] = [];
      if (n <= 0) return outTokens;
      // evaluate() at temperature 0 builds llama.cpp's greedy sampler alone (no penalties: node-llama-cpp
      // applies a repeat penalty only in LlamaChatSession/LlamaCompletion, never at the sequence level).
      const it = sequence.evaluate([...tokens], { ...GREEDY, yieldEogToken: true });
      try {
        for (;;) {
          const r = await it.next();
          if (r.done === true) break;
          onToken?.(outTokens.length);
          outTokens.push(r.value);
          if (outTokens.length >= n || (stopAtEog && model.isEogToken(r.value))) break;
        }
      } finally {
        await it.return(undefined);
      }
      return outTokens;
    }

    const handle: LlamaCppModel = {
      path: ggufPath,
      vocabSize,
      contextSize: sequence.contextSize,
      batchSize: context.batchSize,
      threads: ctxThreads,
      bos: model.tokens.bos,
      eos: model.tokens.eos,
      addBosByDefault: model.tokens.shouldPrependBosToken,
      vocabularyType: String(model.vocabularyType),
      tokenize(text, to = {}) {
        const ids = Array.from(model.tokenize(text, to.special ?? false));
        if (to.addBos === true && model.tokens.bos !== null) ids.unshift(model.tokens.bos);
        return ids;
      },
      detokenize(ids, dto = {}) {
        return model.detokenize(ids, dto.special ?? false);
      },
      async nextTokenLogits(tokens) {
        return (await runPositions(tokens, 'last'))[0]!;
      },
      async allPositionLogits(tokens) {
        return await runPositions(tokens, 'all');
      },
      async greedy(tokens, n, go = {}) {
        return await generate(tokens, n, go.stopAtEog ?? false);
      },
      async prefillSpeed(tokens, repeats = 3) {
        checkIds(tokens);
        checkFits(tokens.length);
        checkBatch(tokens.length);
        let best = Infinity;
        for (let r = 0; r < Math.max(1, repeats) + 1; r++) {
          await sequence.clearHistory();
          const t0 = performance.now();
          await sequence.evaluateWithoutGeneratingNewTokens([...tokens]);
          const s = (performance.now() - t0) / 1000;
          if (r > 0) best = Math.min(best, s); // the first run warms up (allocations, page faults)
        }
        return { tokens: tokens.length, seconds: best, tokensPerSecond: tokens.length / best };
      },
      async decodeSpeed(tokens, n, repeats = 3) {
        if (n < 2) throw new Error('decodeSpeed needs n ≥ 2');
        checkBatch(tokens.length);
        let best = Infinity;
        for (let r = 0; r < Math.max(1, repeats) + 1; r++) {
          // The first generated token comes with the prefill: time from it to the n-th (n - 1 decode steps).
          let t0 = 0;
          let t1 = 0;
          const got = await generate(tokens, n, false, (i) => {
            if (i === 0) t0 = performance.now();
            else if (i === n - 1) t1 = performance.now();
          });
          const s = (t1 - t0) / 1000;
          if (got.length !== n) throw new Error(`generated ${got.length} of ${n} tokens`);
          if (r > 0) best = Math.min(best, s / (n - 1));
        }
        return { tokens: n - 1, seconds: best * (n - 1), tokensPerSecond: 1 / best };
      },
      async close() {
        if (!models.delete(handle)) return;
        await sequence.dispose();
        await context.dispose();
        await model.dispose();
      },
    };
    models.add(handle);
    return handle;
  }

  return {
    version,
    llamaCppRelease: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
    threads,
    systemInfo: llama.systemInfo,
    logs,
    load,
    async close() {
      for (const m of [...models]) await m.close();
      await llama.dispose();
    },
  };
}
