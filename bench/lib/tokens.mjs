/** Training tokens shared by the benchmark peers (bench/peers/torch_gpt.py's `make_tokens` is the same). */

/**
 * The tokens of every step, made before timing: for each step x then y, `len` tokens each, from one
 * 32-bit xorshift (13, 17, 5) stream, token = state % vocab. torch_gpt.py's `make_tokens` is the same.
 */
export function makeStepTokens(nSteps, len, vocab, seed) {
  let s = seed >>> 0;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s >>>= 0;
    s ^= s << 5;
    s >>>= 0;
    return s % vocab;
  };
  const out = [];
  let checksum = 0;
  for (let i = 0; i < nSteps; i++) {
    const pair = [];
    for (let j = 0; j < 2; j++) {
      const a = new Int32Array(len);
      for (let k = 0; k < len; k++) {
        a[k] = next();
        checksum = (checksum * 31 + a[k]) % 1000000007;
      }
      pair.push(a);
    }
    out.push({ x: pair[0], y: pair[1] });
  }
  return { steps: out, checksum };
}
