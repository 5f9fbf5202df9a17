// The main job, shortened, end to end through the CLI: train, checkpoint, sample; then generate from
// the checkpoint. Bad options fail with a clear message and exit code 2.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensors } from '../../src/io/safetensors.js';

const root = join(import.meta.dirname, '../..');
const cli = join(root, 'dist/cli/main.js');
const out = join(root, 'test-output/cli');

beforeAll(() => {
  if (!existsSync(cli)) execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
});

describe('tessera CLI', () => {
  it('trains a Llama-architecture model, exports it to GGUF (Q8_0), describes it and generates from it with a stop string', () => {
    const ck = join(out, 'llama.safetensors');
    const gguf = join(out, 'llama.gguf');
    const run = (args: string[]) => execFileSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8' });
    const log = run(['train', '--arch', 'llama', '--kv-heads', '1', '--steps', '4', '--batch', '2', '--block', '32', '--layers', '1', '--embd', '32', '--heads', '2', '--eval-interval', '4', '--eval-batches', '1', '--sample-length', '10', '--out', ck, '--plain']);
    expect(log).toMatch(/tessera train: llama, /);
    expect(log).toMatch(/--- sample ---/);
    expect(run(['export', '--checkpoint', ck, '--out', gguf, '--type', 'Q8_0'])).toMatch(/wrote .*llama\.gguf/);
    const hf = join(out, 'llama-hf');
    run(['export', '--checkpoint', ck, '--out', hf, '--format', 'safetensors']);
    expect(JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')).model_type).toBe('llama');
    expect(existsSync(join(hf, 'model.safetensors'))).toBe(true);
    const info = run(['info', gguf]);
    expect(info).toMatch(/llama \(tessera-llama-char\)/);
    expect(info).toMatch(/tensor types: .*Q8_0/);
    const full = run(['generate', '--model', gguf, '--prompt', 'The', '--max-tokens', '12', '--temperature', '0']).replace(/\n$/, '');
    expect(full.length).toBeGreaterThan(0);
    const stop = full.slice(3, 5);
    const cut = run(['generate', '--model', gguf, '--prompt', 'The', '--max-tokens', '12', '--temperature', '0', '--stop', stop, '--stream']).replace(/\n$/, '');
    expect(cut).toBe(full.slice(0, full.indexOf(stop)));
  });

  it('trains a small GPT on Moby Dick, saves a checkpoint, and samples from it', async () => {
    const ck = join(out, 'gpt.safetensors');
    const args = ['train', '--steps', '6', '--batch', '2', '--block', '16', '--layers', '1', '--embd', '32', '--heads', '2'];
    const log = execFileSync(process.execPath, [cli, ...args, '--eval-interval', '3', '--eval-batches', '1', '--sample-length', '20', '--out', ck, '--plain'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(log).toMatch(/tessera train: gpt2, 1,\d{3},\d{3} characters, vocab \d+/);
    expect(log).toMatch(/step 6\/6: train loss \d+\.\d+, val loss \d+\.\d+/);
    expect(log).toMatch(/--- sample ---/);
    const { tensors, metadata } = await loadSafetensors(ck);
    expect(metadata.format).toBe('tessera-gpt');
    expect(Object.keys(tensors)).toContain('wte.weight');
    const sample = execFileSync(process.execPath, [cli, 'generate', '--checkpoint', ck, '--prompt', 'The whale', '--length', '15', '--seed', '3'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(sample.startsWith('The whale')).toBe(true);
    expect(sample.trimEnd().length).toBe('The whale'.length + 15);
  });

  it('rejects bad options with a clear error', () => {
    const r = spawnSync(process.execPath, [cli, 'train', '--embd', '30', '--heads', '4', '--steps', '1'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--embd \(30\) must be divisible by --heads \(4\)/);
    const g = spawnSync(process.execPath, [cli, 'generate', '--checkpoint', join(out, 'missing.safetensors')], { cwd: root, encoding: 'utf8' });
    expect(g.status).not.toBe(0);
    expect(g.stderr).toMatch(/missing\.safetensors/);
  });
});
