/**
 * Debug knobs. Options first, environment second: `setDebug(n)` or `TESSERA_DEBUG=n`.
 *  1: one line per realize (kernels, planned memory)
 *  2: each kernel (fused ops, shapes, inputs, outputs) and the memory plan (planned vs naive peak)
 *  3: also the kernel IR
 *  4: also per-kernel timings
 */
let level = (() => {
  const env = typeof process !== 'undefined' ? process.env?.TESSERA_DEBUG : undefined;
  const n = env ? Number.parseInt(env, 10) : 0;
  return Number.isFinite(n) ? n : 0;
})();

let sink: (line: string) => void = (line) => console.error(line);

export function setDebug(n: number, output?: (line: string) => void): void {
  level = n;
  if (output) sink = output;
}
export function debugLevel(): number {
  return level;
}
export function debugLog(line: string): void {
  sink(line);
}
