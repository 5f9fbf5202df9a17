import { ValueError } from '../errors.js';

/**
 * Random contiguous windows of a token stream, for language-model training: inputs are
 * `tokens[i .. i+block)`, targets the same window shifted by one. Deterministic for a given seed.
 */
export class TokenBatcher {
  private state: number;

  constructor(
    private readonly tokens: Int32Array,
    readonly blockSize: number,
    readonly batchSize: number,
    seed = 1,
  ) {
    if (tokens.length < blockSize + 2) {
      throw new ValueError(`TokenBatcher: ${tokens.length} tokens are too few for windows of ${blockSize} + 1`);
    }
    this.state = seed >>> 0 || 1;
  }

  private nextInt(n: number): number {
    // xorshift32: small, fast, and reproducible across platforms.
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state % n;
  }

  /** One batch as flat row-major arrays of shape [batchSize, blockSize]. */
  next(): { x: Int32Array; y: Int32Array } {
    const { blockSize: t, batchSize: b } = this;
    const x = new Int32Array(b * t);
    const y = new Int32Array(b * t);
    for (let i = 0; i < b; i++) {
      const start = this.nextInt(this.tokens.length - t - 1);
      x.set(this.tokens.subarray(start, start + t), i * t);
      y.set(this.tokens.subarray(start + 1, start + t + 1), i * t);
    }
    return { x, y };
  }
}
