/**
 * `tessera serve` as a library call: open the usage ledger, load the model's tokenizer, start the engine
 * (on its worker thread), build the HTTP app and listen; stop gracefully on SIGTERM/SIGINT.
 *
 * Shutdown order: stop accepting connections, let requests in flight finish for a grace period, cancel
 * the rest (each still gets its usage record, status 503), then stop the engine and close the database
 * last, so no record is lost to a closed handle.
 */
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ValueError } from '../errors.js';
import { openGGUF } from '../io/gguf.js';
import { tokenizerFromGGUFMetadata } from '../tokenizer/gguf.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { createEngine } from './engine/index.js';
import { buildApp } from './http/app.js';
import type { ServeLimits } from './http/context.js';
import { defaultDbPath, loadPrices, RateLimiter, SqliteLedger, ThreadedLedger } from './ledger/index.js';
import type { Engine, Ledger } from './types.js';

/** Options of {@link startServer}. */
export interface StartServerOptions {
  /** GGUF model file (Llama architecture, with its tokenizer). */
  model: string;
  /** Interface to listen on (default 127.0.0.1: not reachable from other machines unless asked). */
  host?: string;
  /** Port (default 8000; 0 picks a free one). */
  port?: number;
  /** Ledger database (default `$TESSERA_DB`, else tessera.db). */
  db?: string;
  /** Price table (JSON) for usage costs. */
  prices?: string;
  /** Memory for the paged KV cache in bytes (default 256 MiB). */
  kvCacheBytes?: number;
  /** Sequences decoded together at most (default 64). */
  maxBatch?: number;
  /** Requests queued at most before 503 (the engine's default when unset). */
  maxWaiting?: number;
  /** Prompt tokens prefilled per engine step at most (the engine's default when unset). */
  maxPrefillTokensPerStep?: number;
  /** While sequences decode, tokens per engine step at most, decodes included (the engine's default when unset). */
  maxBatchedTokens?: number;
  /** Device of the model (default cpu). */
  device?: string;
  /** Write one JSON line per engine step to this file (`--step-trace`). */
  stepTrace?: string;
  /** The id clients pass as `model` (default: the GGUF's name). */
  modelId?: string;
  limits?: ServeLimits;
  /** pino options for the request log (default: info level to stdout); false for none. */
  logger?: FastifyServerOptions['logger'];
  /** Milliseconds requests in flight may take to finish on shutdown before they are cancelled (default 10 000). */
  shutdownGraceMs?: number;
  /** Install SIGTERM/SIGINT handlers that close the server (default true). */
  handleSignals?: boolean;
}

/** A listening server. */
export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8000 (the OpenAI base URL is `${url}/v1`). */
  url: string;
  app: FastifyInstance;
  engine: Engine;
  /** Graceful stop (see the module comment). Idempotent. */
  close(): Promise<void>;
}

/** The tokenizer stored in a GGUF file, read from its metadata only (the weights stay on disk). */
export function loadTokenizer(path: string): Tokenizer {
  const f = openGGUF(path);
  try {
    if (!f.metadata.has('tokenizer.ggml.model')) throw new ValueError(`serve: '${path}' has no tokenizer (tokenizer.ggml.* metadata); export the model with its tokenizer`);
    return tokenizerFromGGUFMetadata(f.metadata, path);
  } finally {
    f.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start serving `opts.model`. Resolves once the engine is ready and the port is listening. */
export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const dbPath = opts.db ?? defaultDbPath();
  const store = new SqliteLedger(dbPath, opts.prices ? { prices: loadPrices(opts.prices) } : {});
  // Records commit on a thread of their own (durable writes must not stall token delivery); an
  // in-memory database exists only on its one connection.
  const ledger: Ledger = dbPath === ':memory:' ? store : new ThreadedLedger(store, dbPath);
  let engine: Engine | undefined;
  let app: FastifyInstance | undefined;
  try {
    const tokenizer = loadTokenizer(opts.model);
    engine = await createEngine({
      model: opts.model,
      kvCacheBytes: opts.kvCacheBytes ?? 256 * 1024 * 1024,
      ...(opts.device !== undefined ? { device: opts.device } : {}),
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
      ...(opts.maxWaiting !== undefined ? { maxWaiting: opts.maxWaiting } : {}),
      ...(opts.maxPrefillTokensPerStep !== undefined ? { maxPrefillTokensPerStep: opts.maxPrefillTokensPerStep } : {}),
      ...(opts.maxBatchedTokens !== undefined ? { maxBatchedTokens: opts.maxBatchedTokens } : {}),
      ...(opts.modelId !== undefined ? { modelId: opts.modelId } : {}),
      ...(opts.stepTrace !== undefined ? { stepTrace: opts.stepTrace } : {}),
    });
    const metrics = new Registry();
    collectDefaultMetrics({ register: metrics, prefix: 'tessera_process_' });
    app = buildApp({
      engine,
      ledger,
      tokenizer,
      rateLimiter: new RateLimiter(),
      logger: opts.logger ?? { level: 'info' },
      metrics,
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
    await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8000 });
  } catch (e) {
    await app?.close();
    await engine?.close();
    await ledger.close();
    throw e;
  }
  const addr = app.server.address();
  const host = opts.host ?? '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${typeof addr === 'object' && addr ? addr.port : opts.port}`;
  const liveApp = app;
  const liveEngine = engine;
  const grace = opts.shutdownGraceMs ?? 10_000;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      removeSignals();
      // Stops the listener at once; requests in flight keep their connections.
      const appClosed = liveApp.close();
      const deadline = Date.now() + grace;
      while (liveApp.tessera.inFlight() > 0 && Date.now() < deadline) await sleep(20);
      if (liveApp.tessera.inFlight() > 0) {
        liveApp.log.warn({ inFlight: liveApp.tessera.inFlight() }, 'shutdown: cancelling requests still running');
        liveApp.tessera.cancelInFlight();
        // Cancelled requests record their usage as soon as the engine confirms.
        while (liveApp.tessera.inFlight() > 0) await sleep(10);
      }
      // Keep-alive connections with no request would otherwise hold close() open until they time out.
      liveApp.server.closeAllConnections();
      await appClosed;
      await liveEngine.close();
      await ledger.close();
    })());

  const onSignal = (signal: NodeJS.Signals) => {
    liveApp.log.info({ signal }, 'shutting down');
    close().then(
      () => process.exit(0),
      (e: unknown) => {
        liveApp.log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const removeSignals = () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
  if (opts.handleSignals ?? true) {
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  return { url, app: liveApp, engine: liveEngine, close };
}
