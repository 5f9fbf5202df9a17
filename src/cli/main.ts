#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { TesseraError } from '../errors.js';
import '../runtime/node_devices.js';
import { listDevices } from '../runtime/registry.js';
import { generateFromCheckpoint } from './generate.js';
import { formatDeviceReport, probeDevices } from './info.js';
import { serveWeb } from './web.js';
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
  .option('--plain', 'log lines instead of a progress bar')
  .action(async (o) => {
    await train(o);
  });

program
  .command('generate')
  .description('sample text from a checkpoint written by `tessera train`')
  .requiredOption('--checkpoint <file>', 'checkpoint (.safetensors)')
  .option('--prompt <text>', 'text to continue', '\n')
  .option('--length <n>', 'characters to generate', int, 200)
  .option('--temperature <x>', 'sampling temperature (0: greedy)', num, 0.8)
  .option('--seed <n>', 'sampling seed', int, 0)
  .option('--device <name>', 'device', 'cpu')
  .action(async (o) => {
    process.stdout.write((await generateFromCheckpoint(o)) + '\n');
  });

program
  .command('info')
  .description('list the devices found here with their limits and features, and what --device auto picks')
  .option('--json', 'print JSON')
  .action((o: { json?: boolean }) => {
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

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof TesseraError) {
    console.error(`tessera: ${e.name}: ${e.message}`);
    process.exit(2);
  }
  throw e;
});
