// Every ```ts example in README.md runs, unchanged, against the built package (imports of 'tessera'
// resolve to this package through its own "exports").
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const blocks = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

beforeAll(() => {
  if (!existsSync(join(root, 'dist/index.js'))) execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
});

describe('README examples', () => {
  it('has examples', () => expect(blocks.length).toBeGreaterThanOrEqual(2));
  blocks.forEach((code, i) => {
    it(`example ${i + 1} runs`, () => {
      const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
      const dir = join(root, 'test-output');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `readme-example-${i + 1}.mjs`);
      writeFileSync(file, js);
      const out = execFileSync(process.execPath, [file], { cwd: root, encoding: 'utf8' });
      expect(out.length).toBeGreaterThan(0);
    });
  });
});
