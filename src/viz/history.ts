/**
 * A bounded, multi-resolution history of samples: recent samples at full resolution, older ones in
 * ever wider buckets, so that hours of telemetry fit in a few thousand points and the page that plots
 * them stays responsive.
 *
 * Each tier is a list of buckets of a fixed width (in the units of the sample's key: milliseconds for
 * time, steps for training steps) holding at most `capacity` buckets. A sample lands in the finest tier;
 * when a tier overflows, its oldest bucket moves down into the next, coarser tier. The last tier never
 * overflows into anything: when it is full, its bucket width doubles and neighbouring buckets merge.
 *
 * **What a bucket keeps:** the one sample with the highest `weight` (ties: the latest). For memory that
 * weight is the total bytes, so a downsampled point is the *peak moment* of its interval, with all of
 * that moment's values (bytes per owner stay consistent with each other and still stack to the total);
 * a short spike that would be averaged away by a mean, or lost by keeping the last sample, stays
 * visible however old it gets. The kept sample keeps its own key, so points stay in order and at the
 * time they were measured.
 */

/** One resolution level. */
export interface TierSpec {
  /** Bucket width, in key units (e.g. 250 for 250 ms). */
  width: number;
  /** How much key range the tier covers before handing buckets down (e.g. 300_000 for 5 min). */
  span: number;
}

/** Options of {@link DownsampledHistory}. */
export interface HistoryOptions<T> {
  /** The sample's position (default: its `t` field). Keys must not decrease from one push to the next. */
  key?: (s: T) => number;
  /** Which sample of a bucket to keep: the one with the largest weight. */
  weight: (s: T) => number;
  /**
   * Resolution levels, finest first. The last tier's `span` is ignored: it holds what the others do
   * not, coarsening as needed. Default: 250 ms for 5 minutes, 5 s for an hour, 1 min beyond.
   */
  tiers?: readonly TierSpec[];
  /** Most points held in total (default 3000). The finer tiers shrink to fit when it is small. */
  maxPoints?: number;
  /** Drop samples older than this many key units behind the newest (default: keep everything). */
  maxAge?: number;
}

/** Default tiers for millisecond timestamps. */
export const TIME_TIERS: readonly TierSpec[] = [
  { width: 250, span: 5 * 60_000 },
  { width: 5_000, span: 60 * 60_000 },
  { width: 60_000, span: Infinity },
];

interface Bucket<T> {
  /** floor(key / width) at the tier's width when the bucket was made (recomputed when it coarsens). */
  index: number;
  sample: T;
}

interface Tier<T> {
  width: number;
  capacity: number;
  buckets: Bucket<T>[];
}

/** See the module comment. */
export class DownsampledHistory<T> {
  private readonly tiers: Tier<T>[];
  private readonly key: (s: T) => number;
  private readonly weight: (s: T) => number;
  private readonly maxAge: number;
  readonly maxPoints: number;

  constructor(opts: HistoryOptions<T>) {
    const specs = opts.tiers ?? TIME_TIERS;
    const maxPoints = opts.maxPoints ?? 3000;
    if (specs.length === 0) throw new RangeError('DownsampledHistory: at least one tier is needed');
    if (!Number.isInteger(maxPoints) || maxPoints < 2 * specs.length)
      throw new RangeError(
        `DownsampledHistory: maxPoints must be an integer >= ${2 * specs.length} (2 per tier), got ${maxPoints}`,
      );
    for (const s of specs)
      if (!(s.width > 0) || !(s.span > 0))
        throw new RangeError(
          `DownsampledHistory: tier width and span must be positive, got ${JSON.stringify(s)}`,
        );
    this.key = opts.key ?? ((s: T) => (s as { t: number }).t);
    this.weight = opts.weight;
    this.maxAge = opts.maxAge ?? Infinity;
    this.maxPoints = maxPoints;
    // Capacities of the finer tiers from their spans, scaled down together when they would take more
    // than three quarters of the budget, so the coarsest tier always keeps room for the long tail.
    const finer = specs.slice(0, -1).map((s) => Math.ceil(s.span / s.width));
    const wanted = finer.reduce((a, b) => a + b, 0);
    const room = Math.floor(maxPoints * 0.75);
    const caps = wanted > room ? finer.map((c) => Math.max(2, Math.floor((c * room) / wanted))) : finer;
    const last = maxPoints - caps.reduce((a, b) => a + b, 0);
    this.tiers = specs.map((s, i) => ({
      width: s.width,
      capacity: i < caps.length ? caps[i]! : last,
      buckets: [],
    }));
  }

  /** Add a sample (its key must be at or after the previous one's). */
  push(sample: T): void {
    this.insert(0, sample);
    if (this.maxAge !== Infinity) this.expire(this.key(sample) - this.maxAge);
  }

  /** Every kept sample, oldest first. */
  points(): T[] {
    const out: T[] = [];
    for (let i = this.tiers.length - 1; i >= 0; i--)
      for (const b of this.tiers[i]!.buckets) out.push(b.sample);
    return out;
  }

  /** Number of kept samples (never more than `maxPoints`). */
  get size(): number {
    return this.tiers.reduce((n, t) => n + t.buckets.length, 0);
  }

  /** Current bucket width of each tier, finest first (the last one grows as the history ages). */
  get widths(): number[] {
    return this.tiers.map((t) => t.width);
  }

  private insert(level: number, sample: T): void {
    const tier = this.tiers[level]!;
    const index = Math.floor(this.key(sample) / tier.width);
    const last = tier.buckets.at(-1);
    // Same bucket (or a key that went backwards, which we fold into the newest bucket rather than reorder).
    if (last && index <= last.index) {
      if (this.weight(sample) >= this.weight(last.sample)) last.sample = sample;
    } else tier.buckets.push({ index, sample });
    if (tier.buckets.length <= tier.capacity) return;
    if (level + 1 < this.tiers.length) this.insert(level + 1, tier.buckets.shift()!.sample);
    else this.coarsen(tier);
  }

  /** Double the last tier's bucket width (merging neighbours) until it fits its capacity. */
  private coarsen(tier: Tier<T>): void {
    while (tier.buckets.length > tier.capacity) {
      tier.width *= 2;
      const merged: Bucket<T>[] = [];
      for (const b of tier.buckets) {
        const index = Math.floor(this.key(b.sample) / tier.width);
        const prev = merged.at(-1);
        if (prev && prev.index === index) {
          if (this.weight(b.sample) >= this.weight(prev.sample)) prev.sample = b.sample;
        } else merged.push({ index, sample: b.sample });
      }
      tier.buckets = merged;
    }
  }

  private expire(cutoff: number): void {
    for (let i = this.tiers.length - 1; i >= 0; i--) {
      const b = this.tiers[i]!.buckets;
      while (b.length > 0 && this.key(b[0]!.sample) < cutoff) b.shift();
      if (b.length > 0) return;
    }
  }
}
