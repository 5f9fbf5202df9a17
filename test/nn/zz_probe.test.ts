import { it } from 'vitest';
import { tensor, realize, noGrad } from '../../src/index.js';
it('assign', () => {
  const p = tensor([1, 2, 3], { dtype: 'f32', requiresGrad: true });
  const loss = p.mul(p).sum();
  loss.backward();
  noGrad(() => { p.assign(p.sub(p.grad!.mul(0.1))); });
  realize(loss, p);
  console.log(loss.dataSync(), p.dataSync());
});
