// The dashboard's downsampling store (src/viz/history.ts): bounded however long it runs, full resolution
// for the recent past, and each older bucket represented by its peak sample (a real sample, unchanged).
import { describe, expect, it } from 'vitest';
import { DownsampledHistory } from '../../src/viz/history.js';

interface Sample {
  t: number;
  a: number;
  b: number;
}
const total = (s: Sample) => s.a + s.b;

/** A deterministic, wiggly signal with a spike at `spikeAt`. */
function sampleAt(t: number, spikeAt: number): Sample {
  const base = 1000 + 300 * Math.sin(t / 97_000) + ((t / 250) % 7) * 10;
  return t === spikeAt ? { t, a: base, b: 1e6 } : { t, a: base, b: base / 2 };
}

describe('DownsampledHistory', () => {
  it('stays bounded over six simulated hours at 250 ms, keeping recent samples at full resolution', () => {
    const h = new DownsampledHistory<Sample>({ weight: total, maxPoints: 3000 });
    const start = 1.7e12;
    const spikeAt = start + 30 * 60_000 + 4_750; // 30 min in: a 250 ms spike
    const pushed = new Map<number, Sample>();
    const steps = (6 * 3600_000) / 250;
    let maxSize = 0;
    for (let i = 0; i <= steps; i++) {
      const s = sampleAt(start + i * 250, spikeAt);
      pushed.set(s.t, s);
      h.push(s);
      maxSize = Math.max(maxSize, h.size);
    }
    expect(maxSize).toBeLessThanOrEqual(3000);
    const pts = h.points();
    expect(pts).toHaveLength(h.size);
    // Ordered, and every point is a sample that was pushed, unchanged (the same object).
    for (let i = 1; i < pts.length; i++) expect(pts[i]!.t).toBeGreaterThan(pts[i - 1]!.t);
    for (const p of pts) expect(pushed.get(p.t)).toBe(p);
    // The whole run is covered: the first point is from the first minutes, the last is the newest.
    expect(pts[0]!.t - start).toBeLessThan(10 * 60_000);
    expect(pts.at(-1)!.t).toBe(start + steps * 250);
    // The last five minutes at full resolution: one point per 250 ms.
    const end = start + steps * 250;
    const recent = pts.filter((p) => p.t > end - 5 * 60_000);
    expect(recent.length).toBeGreaterThanOrEqual((5 * 60_000) / 250 - 1);
    // The 250 ms spike 5.5 hours ago survived every coarsening.
    expect(pts.some((p) => p.t === spikeAt && p.b === 1e6)).toBe(true);
    // The last tier coarsened to keep up (1 min buckets would need 300+ points per 5 h beyond the hour).
    expect(h.widths[0]).toBe(250);
    expect(h.widths[1]).toBe(5_000);
    expect(h.widths[2]).toBeGreaterThanOrEqual(60_000);
  });

  it("keeps each bucket's sample of highest weight (ties: the latest), values intact", () => {
    const h = new DownsampledHistory<Sample>({
      weight: total,
      tiers: [
        { width: 1, span: 4 },
        { width: 10, span: Infinity },
      ],
      maxPoints: 100,
    });
    const pts: Sample[] = [];
    for (let t = 0; t < 30; t++) {
      const s = { t, a: t % 10 === 3 ? 50 : 1, b: t === 17 ? 5 : 0 };
      pts.push(s);
      h.push(s);
    }
    const kept = h.points();
    // Tier 1 holds t = 0..25 in buckets of 10 (its last bucket still filling); tier 0 the last 4.
    expect(kept.map((s) => s.t)).toEqual([3, 13, 23, 26, 27, 28, 29]);
    expect(kept[0]).toBe(pts[3]);
    // Equal weights: the later sample wins.
    const ties = new DownsampledHistory<Sample>({
      weight: total,
      tiers: [{ width: 10, span: Infinity }],
      maxPoints: 10,
    });
    ties.push({ t: 1, a: 1, b: 0 });
    ties.push({ t: 2, a: 1, b: 0 });
    expect(ties.points().map((s) => s.t)).toEqual([2]);
  });

  it('coarsens the last tier by doubling its buckets when full, and drops samples past maxAge', () => {
    const h = new DownsampledHistory<Sample>({
      weight: total,
      tiers: [{ width: 1, span: Infinity }],
      maxPoints: 8,
    });
    for (let t = 0; t < 100; t++) h.push({ t, a: t === 41 ? 99 : 1, b: 0 });
    expect(h.size).toBeLessThanOrEqual(8);
    expect(h.widths[0]).toBe(16);
    expect(h.points().some((s) => s.t === 41)).toBe(true);

    const aged = new DownsampledHistory<Sample>({
      weight: total,
      tiers: [
        { width: 1, span: 5 },
        { width: 5, span: Infinity },
      ],
      maxPoints: 50,
      maxAge: 20,
    });
    for (let t = 0; t < 100; t++) aged.push({ t, a: 1, b: 0 });
    expect(aged.points()[0]!.t).toBe(79); // newest 99, maxAge 20: older than 79 is gone
  });

  it('shrinks the finer tiers to fit a small maxPoints, and rejects impossible settings', () => {
    const h = new DownsampledHistory<Sample>({ weight: total, maxPoints: 100 });
    for (let i = 0; i < 20_000; i++) h.push({ t: i * 250, a: 1, b: 1 });
    expect(h.size).toBeLessThanOrEqual(100);
    expect(() => new DownsampledHistory<Sample>({ weight: total, maxPoints: 3 })).toThrow(RangeError);
    expect(() => new DownsampledHistory<Sample>({ weight: total, tiers: [] })).toThrow(RangeError);
    expect(() => new DownsampledHistory<Sample>({ weight: total, tiers: [{ width: 0, span: 1 }] })).toThrow(
      RangeError,
    );
  });
});
