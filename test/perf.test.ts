import { it } from 'vitest';
import { randn, realize } from '../src/index.js';
it('perf', () => {
  const a = randn([128, 256]).realize();
  const b = randn([256, 256]).realize();
  const macs = 128 * 256 * 256;
  for (let i = 0; i < 4; i++) {
  let t0 = performance.now();
  const c = a.matmul(b).realize();
  let t1 = performance.now();
  console.log(`matmul ${(t1 - t0).toFixed(1)} ms, ${(macs / (t1 - t0) / 1e3).toFixed(1)} MMAC/s`);
  t0 = performance.now();
  const d = a.matmul(b).add(i).realize();
  t1 = performance.now();
  console.log(`matmul2 ${(t1 - t0).toFixed(1)} ms, ${(macs / (t1 - t0) / 1e3).toFixed(1)} MMAC/s`);
  const e = randn([512, 512]).realize();
  t0 = performance.now();
  e.exp().mul(2).add(1).realize();
  t1 = performance.now();
  console.log(`ew ${(t1 - t0).toFixed(1)} ms ${(512*512/(t1-t0)/1e3).toFixed(1)} Melem/s`);
  }
});
