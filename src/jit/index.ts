/** `jit(fn)`: capture a step's kernels once per input signature and replay them. */
export { jit } from './jit.js';
export type { Jitted, JitStats } from './jit.js';
