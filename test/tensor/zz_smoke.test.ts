import { it } from 'vitest';
import { tensor, arange } from '../../src/index.js';
it('smoke', () => {
  const a = tensor([[1,2],[3,4]], {dtype:'f32', requiresGrad:true});
  console.log(a.requiresGrad);
  const m = a.mul(a);
  console.log(m.requiresGrad);
  const b = m.sum();
  console.log(b.requiresGrad, b.node.op, b.node.src.map(s=>s.op));
  b.backward();
  console.log(a.grad);
  const c = tensor([[1,2],[3,4]], {dtype:'f32'}); c.requiresGrad = true;
  c.mul(2).sum().backward(); console.log(c.grad?.dataSync());
  const d = tensor([1.5,2], {requiresGrad:true});
  d.mul(d).sum().backward(); console.log(d.grad?.dataSync());
});
