#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { TesseraError, ValueError } from '../errors.js';
import type { ExportType } from '../models/gguf.js';
import { describeGGUFModel } from '../models/gguf.js';
import { trainTokenizerCommand } from '../tokenizer/train.js';
import { exportCheckpoint, formatGGUFInfo, generateFromGGUF } from './llm.js';
import '../runtime/node_devices.js';
import { listDevices } from '../runtime/registry.js';
import { generateFromCheckpoint } from './generate.js';
import { formatDeviceReport, probeDevices } from './info.js';
import { serveWeb } from './web.js';
import { registerServeCommand } from './serve.js';
import { registerAdminCommands } from './admin.js';
import { defaultTrainOptions, train } from './train.js';

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`expected an integer, got '${v}'`);
  return n;
};
const num = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got '${v}'`);
  return n;
};

const program = new Command();
program.name('tessera').description('Tessera: a deep-learning compiler and runtime in TypeScript').version('0.1.0');

const d = defaultTrainOptions;
program
  .command('train')
  .description('train a character-level GPT (default: on Moby Dick), save a checkpoint, print a sample')
  .option('--data <file>', 'training text file (default: Moby Dick)')
  .option('--steps <n>', 'optimizer steps', int, d.steps)
  .option('--batch <n>', 'sequences per batch', int, d.batch)
  .option('--block <n>', 'context length (characters)', int, d.block)
  .option('--layers <n>', 'transformer blocks', int, d.layers)
  .option('--heads <n>', 'attention heads', int, d.heads)
  .option('--embd <n>', 'model width', int, d.embd)
  .option('--lr <x>', 'peak learning rate (AdamW, cosine decay)', num, d.lr)
  .option('--dropout <p>', 'dropout probability', num, d.dropout)
  .option('--device <name>', `device (${listDevices().join(', ')})`, d.device)
  .option('--seed <n>', 'random seed', int, d.seed)
  .option('--eval-interval <n>', 'validate every n steps', int, d.evalInterval)
  .option('--eval-batches <n>', 'batches per validation', int, d.evalBatches)
  .option('--out <file>', 'checkpoint path', d.out)
  .option('--sample-length <n>', 'characters to sample at the end', int, d.sampleLength)
  .option('--arch <name>', 'gpt2 or llama', d.arch)
  .option('--kv-heads <n>', 'llama: key/value heads (grouped-query attention)', int)
  .option('--precision <p>', 'f32, or mixed precision: bf16 (autocast) or f16 (autocast + dynamic loss scaling)', d.precision)
  .option('--grad-accum <k>', 'micro-batches of --batch sequences per optimizer step (gradient accumulation)', int, d.gradAccum)
  .option('--checkpointing', 'recompute each block\'s activations in the backward pass instead of storing them')
  .option('--memory-budget <size>', 'device memory cap, e.g. 2GiB: fails before training when one step needs more')
  .option('--dashboard [port]', 'serve the live memory dashboard while training (default port 8090)', (v: string) => int(v))
  .option('--trace <file>', 'write a Chrome trace (kernels, steps, memory counters) of the run')
  .option('--plain', 'log lines instead of a progress bar')
  .action(async (o) => {
    await train(o);
  });

program
  .command('generate')
  .description('continue a prompt: with a GGUF model (llama or gpt2, its own tokenizer), or a checkpoint of `tessera train`')
  .option('--model <path>', 'GGUF file (llama.cpp format) or Hugging Face directory (config.json + safetensors)')
  .option('--checkpoint <file>', 'checkpoint (.safetensors) written by `tessera train`')
  .option('--prompt <text>', 'text to continue', '\n')
  .option('--length <n>', 'characters to generate (--checkpoint)', int, 200)
  .option('--max-tokens <n>', 'tokens to generate (--model)', int, 64)
  .option('--temperature <x>', 'sampling temperature (0: greedy)', num, 0.8)
  .option('--top-k <n>', 'sample among the k most likely tokens', int)
  .option('--top-p <x>', 'nucleus sampling threshold', num)
  .option('--min-p <x>', 'drop tokens below min-p times the most likely', num)
  .option('--repeat-penalty <x>', 'penalise tokens already seen (1: off)', num)
  .option('--seed <n>', 'sampling seed', int, 0)
  .option('--stop <text...>', 'stop strings (--model): the text ends before the first one')
  .option('--stream', 'print tokens as they are generated (--model)')
  .option('--device <name>', 'device', 'cpu')
  .action(async (o) => {
    if (o.model) {
      const text = generateFromGGUF({ model: o.model, prompt: o.prompt, maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP, repeatPenalty: o.repeatPenalty, seed: o.seed, stop: o.stop, stream: o.stream, device: o.device });
      process.stdout.write(o.stream ? '\n' : text + '\n');
      return;
    }
    if (!o.checkpoint) throw new ValueError('generate: give --model file.gguf or --checkpoint file.safetensors');
    process.stdout.write((await generateFromCheckpoint(o)) + '\n');
  });

program
  .command('export')
  .description('export a checkpoint of `tessera train` to GGUF (llama.cpp) or safetensors')
  .requiredOption('--checkpoint <file>', 'checkpoint (.safetensors) written by `tessera train`')
  .requiredOption('--out <path>', 'output file (gguf) or directory (safetensors: Hugging Face config.json + model.safetensors)')
  .option('--format <name>', 'gguf or safetensors', 'gguf')
  .option('--type <name>', 'GGUF storage of weight matrices: F32, F16, BF16, Q8_0', 'F32')
  .action(async (o: { checkpoint: string; out: string; format: string; type: string }) => {
    if (o.format !== 'gguf' && o.format !== 'safetensors') throw new ValueError(`export: --format must be gguf or safetensors, got '${o.format}'`);
    if (!['F32', 'F16', 'BF16', 'Q8_0'].includes(o.type)) throw new ValueError(`export: --type must be F32, F16, BF16 or Q8_0, got '${o.type}'`);
    console.log(`wrote ${await exportCheckpoint({ checkpoint: o.checkpoint, out: o.out, format: o.format, type: o.type as ExportType })}`);
  });

const tokenizerCmd = program.command('tokenizer').description('tokenizer tools');
tokenizerCmd
  .command('train')
  .description('learn a byte-level BPE vocabulary (GPT-2 style; llama.cpp understands it) from a text corpus')
  .requiredOption('--input <file>', 'training text (UTF-8)')
  .requiredOption('--vocab-size <n>', 'vocabulary size (256 bytes + merges + special tokens)', int)
  .requiredOption('--out <dir>', 'directory for vocab.json, merges.txt, tokenizer.json')
  .option('--min-frequency <n>', 'fewest occurrences of a merged pair', int)
  .action(async (o: { input: string; vocabSize: number; out: string; minFrequency?: number }) => {
    const s = await trainTokenizerCommand({ input: o.input, vocabSize: o.vocabSize, out: o.out, minFrequency: o.minFrequency });
    for (const l of s.lines) console.log(l);
  });

program
  .command('info [file]')
  .description('without a file: the devices found here with their limits and features, and what --device auto picks; with a .gguf file: its architecture, parameters, tensor types and memory needed')
  .option('--json', 'print JSON')
  .action((file: string | undefined, o: { json?: boolean }) => {
    if (file) {
      console.log(o.json ? JSON.stringify(describeGGUFModel(file), null, 2) : formatGGUFInfo(file));
      return;
    }
    const r = probeDevices();
    console.log(o.json ? JSON.stringify(r, null, 2) : formatDeviceReport(r));
  });

program
  .command('web')
  .description('serve the browser demo (train a tiny GPT on WebGPU in the page) on http://127.0.0.1')
  .option('--port <n>', 'port (0: any free port)', int, 8080)
  .option('--host <name>', 'interface to listen on', '127.0.0.1')
  .option('--build', 'rebuild the browser bundle first')
  .action(async (o: { port: number; host: string; build?: boolean }) => {
    const s = await serveWeb({ port: o.port, host: o.host, build: o.build ? true : undefined, log: console.log });
    console.log(`open ${s.url}/ in a browser with WebGPU (Ctrl-C stops)`);
  });

registerServeCommand(program);
registerAdminCommands(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof TesseraError) {
    console.error(`tessera: ${e.name}: ${e.message}`);
    process.exit(2);
  }
  throw e;
});
