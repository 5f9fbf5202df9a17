import { it } from 'vitest';
import { randn, setDebug } from '../src/index.js';
it('x', () => {
  const a = randn([4, 8]).realize();
  const b = randn([8, 8]).realize();
  setDebug(3);
  a.matmul(b).add(2).realize();
});
