/**
 * `tessera serve --model file.gguf`: the OpenAI-compatible server (src/serve/server.ts) from the command
 * line. Runs until SIGTERM/SIGINT, then shuts down gracefully.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { startServer } from '../serve/server.js';

const positiveInt = (what: string) => (v: string) => {
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= 1)) throw new InvalidArgumentError(`${what} must be a positive integer, got '${v}'`);
  return n;
};
const port = (v: string) => {
  const n = Number(v);
  if (!(Number.isInteger(n) && n >= 0 && n <= 65535)) throw new InvalidArgumentError(`port must be an integer in 0..65535, got '${v}'`);
  return n;
};

/** Add the `serve` command to `program`. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve a GGUF model over an OpenAI-compatible HTTP API (completions, chat, streaming), with API keys and usage metering')
    .requiredOption('--model <file>', 'GGUF model file (llama, with its tokenizer)')
    .option('--host <addr>', 'interface to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', port, 8000)
    .option('--db <file>', 'usage ledger database (default: $TESSERA_DB or ./tessera.db)')
    .option('--prices <file>', 'price table (JSON) for usage costs')
    .option('--kv-cache-mb <n>', 'memory for the paged KV cache, MiB', positiveInt('--kv-cache-mb'), 256)
    .option('--max-batch <n>', 'sequences decoded together at most', positiveInt('--max-batch'), 64)
    .option('--max-waiting <n>', 'requests queued at most before answering 503', positiveInt('--max-waiting'))
    .option('--max-prefill-tokens <n>', 'prompt tokens prefilled per engine step at most (default 256)', positiveInt('--max-prefill-tokens'))
    .option('--max-batched-tokens <n>', 'while sequences decode, tokens per step at most, decodes included (default 20; smaller: steadier inter-token latency, larger: faster time to first token and more throughput)', positiveInt('--max-batched-tokens'))
    .option('--device <name>', 'device of the model', 'cpu')
    .option('--model-id <id>', "the model id clients pass (default: the GGUF's name)")
    .option('--max-prompt-tokens <n>', 'longest prompt accepted, tokens (default: the context length)', positiveInt('--max-prompt-tokens'))
    .option('--max-tokens-default <n>', 'completion tokens when a request gives no max_tokens', positiveInt('--max-tokens-default'), 1024)
    .option('--max-n <n>', 'largest n (choices per request)', positiveInt('--max-n'), 8)
    .option('--step-trace <file>', 'write one JSON line per engine step (end time, duration, batch, prefill and decode tokens) to this file')
    .option('--log-level <level>', 'request log level (fatal, error, warn, info, debug, silent)', 'info')
    .action(async (o) => {
      const server = await startServer({
        model: o.model,
        host: o.host,
        port: o.port,
        ...(o.db !== undefined ? { db: o.db } : {}),
        ...(o.prices !== undefined ? { prices: o.prices } : {}),
        kvCacheBytes: o.kvCacheMb * 1024 * 1024,
        maxBatch: o.maxBatch,
        ...(o.maxWaiting !== undefined ? { maxWaiting: o.maxWaiting } : {}),
        ...(o.maxPrefillTokens !== undefined ? { maxPrefillTokensPerStep: o.maxPrefillTokens } : {}),
        ...(o.maxBatchedTokens !== undefined ? { maxBatchedTokens: o.maxBatchedTokens } : {}),
        device: o.device,
        ...(o.stepTrace !== undefined ? { stepTrace: o.stepTrace } : {}),
        ...(o.modelId !== undefined ? { modelId: o.modelId } : {}),
        limits: { maxTokensDefault: o.maxTokensDefault, maxN: o.maxN, ...(o.maxPromptTokens !== undefined ? { maxPromptTokens: o.maxPromptTokens } : {}) },
        logger: { level: o.logLevel },
      });
      process.stderr.write(`tessera: serving '${server.engine.model.id}' at ${server.url}/v1 (Ctrl-C to stop)\n`);
    });
}
