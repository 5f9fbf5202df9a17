/**
 * Prometheus metrics of the server (prom-client), on their own registry so several servers (tests) can
 * live in one process. Request counters and latency histograms are updated as requests run; the engine
 * gauges read `engine.stats()` when /metrics is scraped, so they cost nothing between scrapes.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine, EngineStats } from '../types.js';

/** Time-to-first-token buckets (seconds): from a warm cache hit to a long prefill behind a queue. */
const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Inter-token latency buckets (seconds): one decode step, from a tiny model to a loaded batch. */
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const STEP_BUCKETS = [0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2.5, 10];

/** The metric objects the HTTP layer updates. */
export class ServeMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly promptTokens: Counter<'endpoint'>;
  readonly completionTokens: Counter<'endpoint'>;
  readonly timeToFirstToken: Histogram<'endpoint'>;
  readonly interTokenLatency: Histogram<'endpoint'>;
  readonly requestDuration: Histogram<'endpoint'>;
  readonly stepDuration: Histogram<'kind'>;
  readonly stepCompiles: Counter<'shape'>;

  private readonly counted = new WeakSet<object>();

  /**
   * Count a request once. Fastify's onResponse covers every response that was written to the end; a
   * client that disconnected mid-response never gets there, so the completion path counts it itself.
   */
  countRequest(request: object, endpoint: string, status: number): void {
    if (this.counted.has(request)) return;
    this.counted.add(request);
    this.requests.inc({ endpoint, status: String(status) });
  }

  constructor(engine: Engine, registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.requests = new Counter({ name: 'tessera_http_requests_total', help: 'HTTP requests by endpoint and status code', labelNames: ['endpoint', 'status'], registers });
    this.promptTokens = new Counter({ name: 'tessera_prompt_tokens_total', help: 'Prompt tokens of finished requests', labelNames: ['endpoint'], registers });
    this.completionTokens = new Counter({ name: 'tessera_completion_tokens_total', help: 'Completion tokens of finished requests', labelNames: ['endpoint'], registers });
    this.timeToFirstToken = new Histogram({ name: 'tessera_time_to_first_token_seconds', help: 'Time from request arrival to the first generated token', labelNames: ['endpoint'], buckets: TTFT_BUCKETS, registers });
    this.interTokenLatency = new Histogram({ name: 'tessera_inter_token_latency_seconds', help: 'Time between consecutive tokens of one sequence', labelNames: ['endpoint'], buckets: ITL_BUCKETS, registers });
    this.requestDuration = new Histogram({ name: 'tessera_request_duration_seconds', help: 'Time from arrival to the end of a completion request', labelNames: ['endpoint'], buckets: DURATION_BUCKETS, registers });

    // Engine steps: 'decode' steps only advance running sequences; 'mixed' ones also prefill prompt
    // tokens. A step that compiled a new shape bucket is counted in tessera_engine_step_compiles_total
    // (its duration includes the compilation).
    this.stepDuration = new Histogram({ name: 'tessera_engine_step_seconds', help: 'Duration of one engine step (one batched model call)', labelNames: ['kind'], buckets: STEP_BUCKETS, registers });
    this.stepCompiles = new Counter({ name: 'tessera_engine_step_compiles_total', help: 'Engine steps that compiled a new shape bucket, by bucket', labelNames: ['shape'], registers });
    engine.onStep?.((s) => {
      this.stepDuration.observe({ kind: s.prefillTokens > 0 ? 'mixed' : 'decode' }, s.ms / 1000);
      if (s.compiled) this.stepCompiles.inc({ shape: s.compiledShape ?? 'unknown' });
    });
    const gauge = (name: string, help: string, read: (s: EngineStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(engine.stats()));
        },
      });
    gauge('tessera_sequences_running', 'Sequences in the running batch', (s) => s.running);
    gauge('tessera_sequences_waiting', 'Sequences queued for admission', (s) => s.waiting);
    gauge('tessera_kv_blocks_used', 'KV cache blocks in use', (s) => s.kvBlocksUsed);
    gauge('tessera_kv_blocks_free', 'KV cache blocks free', (s) => s.kvBlocksFree);
    gauge('tessera_kv_blocks_total', 'KV cache blocks in the pool', (s) => s.kvBlocksTotal);
    gauge('tessera_batch_size', 'Sequences in the last decode step', (s) => s.lastBatchSize);
    gauge('tessera_engine_busy_fraction', 'Fraction of recent wall time the engine spent computing', (s) => s.busyFraction);
    gauge('tessera_engine_steps', 'Engine steps run since start', (s) => s.steps);
    gauge('tessera_engine_prefill_tokens', 'Prompt tokens prefilled since start', (s) => s.prefillTokens);
    gauge('tessera_engine_decode_tokens', 'Tokens decoded since start', (s) => s.decodeTokens);
    gauge('tessera_engine_preemptions', 'Sequences preempted since start', (s) => s.preemptions);
  }
}
