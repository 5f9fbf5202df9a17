// Chrome trace export (src/memory/trace.ts): a real workload (realizes and AdamW training steps on the
// interpreter) recorded, saved atomically, re-read and checked against the Trace Event Format with an
// independent validator; the memory counters must end where memory.stats() is.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { randn, realize, tensor } from '../../src/index.js';
import { emit, isKernelProfiling, markStep, MEMORY_OWNERS, now } from '../../src/memory/events.js';
import { stats } from '../../src/memory/stats.js';
import type { ChromeTrace, TraceEvent } from '../../src/memory/trace.js';
import { COALESCE_US, startTrace } from '../../src/memory/trace.js';
import { Linear } from '../../src/nn/index.js';
import { AdamW } from '../../src/optim/index.js';
import { validateTrace, validateTraceText } from '../helpers/trace_format.js';

const dir = mkdtempSync(join(tmpdir(), 'tessera-trace-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The last counter sample of each `memory <device>` track. */
function lastMemoryCounters(trace: ChromeTrace): Map<string, Record<string, number>> {
  const last = new Map<string, Record<string, number>>();
  for (const e of trace.traceEvents)
    if (e.ph === 'C' && e.name.startsWith('memory '))
      last.set(e.name.slice(7), e.args as Record<string, number>);
  return last;
}

describe('startTrace', () => {
  it('records realizes and training steps as a valid Chrome trace whose memory counters end at stats()', async () => {
    const rec = startTrace({ kernels: true });
    onTestFinished(() => rec.stop()); // a failing assertion must not leave profiling on for later tests
    expect(rec.recording).toBe(true);
    expect(isKernelProfiling()).toBe(true);

    // A few plain realizes...
    const a = tensor([1, 2, 3, 4]);
    const b = a.mul(2).add(1);
    realize(b);
    expect([...(await b.data())]).toEqual([3, 5, 7, 9]);
    // ...and a tiny training loop.
    const lin = new Linear(8, 4);
    const opt = new AdamW(lin.parameters(), { lr: 0.01 });
    const steps = 3;
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      opt.zeroGrad();
      const loss = lin
        .forward(randn([16, 8]))
        .square()
        .mean();
      loss.backward();
      opt.step({ realize: [loss] });
      markStep(s, performance.now() - t0, loss.itemSync());
    }
    // A run and a kernel as the runtime reports them (start time and duration), so the slice export is
    // covered whether or not this build's runtime instruments its launches yet.
    const t = now();
    emit({ type: 'run', ts: t - 2, dur: 1.5, device: 'interp', kernels: 2, label: 'trace-test-run' });
    emit({ type: 'kernel', ts: t - 2, dur: 0.5, device: 'interp', name: 'trace_test_kernel' });
    a.dispose();
    b.dispose();
    rec.stop();
    expect(rec.recording).toBe(false);
    expect(isKernelProfiling()).toBe(false);
    rec.stop(); // idempotent: must not turn profiling off twice
    expect(isKernelProfiling()).toBe(false);

    const file = join(dir, 'nested', 'train.trace.json');
    await rec.save(file);
    // Atomic write: only the final file remains, no temp sibling.
    expect(readdirSync(join(dir, 'nested'))).toEqual(['train.trace.json']);
    const text = readFileSync(file, 'utf8');
    expect(validateTraceText(text)).toEqual([]);
    const trace = JSON.parse(text) as ChromeTrace;
    expect(trace.displayTimeUnit).toBe('ms');
    expect(trace.metadata.droppedEvents).toBe(0);
    expect(trace.metadata.kernelProfiling).toBe(true);
    expect(Date.parse(trace.metadata.startTime)).toBeGreaterThan(0);

    const ev = trace.traceEvents;
    const threadNames = ev
      .filter((e) => e.ph === 'M' && e.name === 'thread_name')
      .map((e) => (e.args as { name: string }).name);
    expect(threadNames).toEqual(expect.arrayContaining(['training steps', 'interp runs', 'interp kernels']));
    expect(ev.some((e) => e.ph === 'M' && e.name === 'process_name')).toBe(true);
    const tidOf = (name: string) =>
      ev.find((e) => e.ph === 'M' && e.name === 'thread_name' && (e.args as { name: string }).name === name)!
        .tid;

    // Steps: one slice each on the steps track, ending where markStep was called, with the loss.
    const stepSlices = ev.filter((e) => e.ph === 'X' && e.cat === 'step');
    expect(stepSlices.map((e) => e.name)).toEqual(['step 0', 'step 1', 'step 2']);
    for (const s of stepSlices) {
      expect(s.tid).toBe(tidOf('training steps'));
      expect(s.dur!).toBeGreaterThan(0);
      expect(Number.isFinite((s.args as { loss: number }).loss)).toBe(true);
    }
    expect(ev.filter((e) => e.ph === 'C' && e.name === 'loss')).toHaveLength(steps);

    // Runs and kernels: complete slices on their device's tracks, in microseconds.
    const run = ev.find(
      (e) =>
        e.ph === 'X' &&
        e.cat === 'run' &&
        e.name === 'trace-test-run' &&
        (e.args as { kernels: number }).kernels === 2,
    )!;
    expect(run.tid).toBe(tidOf('interp runs'));
    expect(run.dur).toBeCloseTo(1500, 0);
    const kernel = ev.find((e) => e.ph === 'X' && e.cat === 'kernel' && e.name === 'trace_test_kernel')!;
    expect(kernel.tid).toBe(tidOf('interp kernels'));
    expect(kernel.dur).toBeCloseTo(500, 0);
    expect(kernel.ts).toBeCloseTo(run.ts, 0);
    // The step slices lie within the recording and after its start.
    const last = stepSlices.at(-1)!;
    expect(last.ts + last.dur!).toBeLessThanOrEqual((now() - trace.metadata.startEpochMs) * 1000);

    // Memory: counters per device with every owner; the training allocated (arena, parameters, state).
    const mem = ev.filter((e) => e.ph === 'C' && e.name === 'memory interp');
    expect(mem.length).toBeGreaterThan(5);
    for (const m of mem) expect(Object.keys(m.args!).sort()).toEqual([...MEMORY_OWNERS].sort());
    expect(Math.max(...mem.map((m) => (m.args as Record<string, number>).activation!))).toBeGreaterThan(0);
    const end = lastMemoryCounters(trace);
    const s = stats();
    for (const [device, byOwner] of end) expect(byOwner, device).toEqual(s[device]!.byOwner);
    expect(end.has('interp')).toBe(true);
  });

  it('starts the counters from what is already allocated', () => {
    const held = tensor([1, 2, 3, 4, 5, 6, 7, 8]);
    realize(held);
    const rec = startTrace();
    rec.stop();
    const trace = rec.toJSON();
    expect(validateTrace(trace)).toEqual([]);
    const first = trace.traceEvents.find((e) => e.ph === 'C' && e.name === 'memory interp')!;
    expect(first.ts).toBe(0);
    expect(first.args).toEqual(stats().interp!.byOwner);
    expect(isKernelProfiling()).toBe(false); // kernels: false leaves profiling alone
    held.dispose();
  });

  it('keeps at most maxEvents in a ring, dropping the oldest and counting them', () => {
    const rec = startTrace({ maxEvents: 50 });
    for (let i = 0; i < 200; i++) markStep(i, 0.25);
    rec.stop();
    const trace = rec.toJSON();
    expect(validateTrace(trace)).toEqual([]);
    const body = trace.traceEvents.filter((e) => e.ph !== 'M');
    expect(body).toHaveLength(50);
    // Each markStep without a loss is one slice; the baseline counters were dropped first.
    expect(trace.metadata.droppedEvents).toBe(rec.dropped);
    expect(rec.dropped).toBe(200 + Object.keys(stats()).length - 50);
    expect(body.at(-1)!.name).toBe('step 199');
    expect(body[0]!.name).toBe('step 150');
    // Metadata events are not subject to the ring.
    expect(trace.traceEvents.some((e) => e.ph === 'M' && e.name === 'process_name')).toBe(true);
    expect(() => startTrace({ maxEvents: 0 })).toThrow(RangeError);
  });

  it('coalesces memory changes that arrive within a few microseconds into one sample', () => {
    const rec = startTrace();
    const device = 'trace-coalesce';
    const t = now();
    const alloc = (id: number, ts: number, bytes: number) =>
      emit({ type: 'alloc', ts, id, device, bytes, dtype: 'f32', shape: [bytes / 4], owner: 'tensor' });
    alloc(1e9, t, 400);
    alloc(1e9 + 1, t + (COALESCE_US / 2) * 1e-3, 800); // within the window: merged
    emit({ type: 'owner', ts: t + 0.5, id: 1e9, device, bytes: 400, from: 'tensor', to: 'parameter' }); // 500 µs later: a new sample
    emit({ type: 'free', ts: t + 0.5 + 1e-3, id: 1e9 + 1, device, bytes: 800, owner: 'tensor' }); // 1 µs later: merged
    rec.stop();
    const mem = rec.toJSON().traceEvents.filter((e: TraceEvent) => e.name === `memory ${device}`);
    expect(mem.map((m) => [m.args!.tensor, m.args!.parameter])).toEqual([
      [1200, 0],
      [0, 400],
    ]);
    expect(mem[1]!.ts - mem[0]!.ts).toBeCloseTo(500, 0);
  });

  it('places run slices at their start time', () => {
    const rec = startTrace();
    const start = now() + 5; // after the recording began (earlier times clamp to its start)
    emit({ type: 'run', ts: start, dur: 20, device: 'trace-stamp', kernels: 1, label: 'stamped-start' });
    rec.stop();
    const trace = rec.toJSON();
    const runs = trace.traceEvents.filter((e) => e.cat === 'run');
    expect(runs).toHaveLength(1);
    expect(runs[0]!.ts).toBeCloseTo((start - trace.metadata.startEpochMs) * 1000, 0);
    expect(runs[0]!.dur).toBeCloseTo(20_000, 0);
    expect(validateTrace(trace)).toEqual([]);
  });
});

describe('the trace validator', () => {
  it('rejects what viewers reject', () => {
    expect(validateTraceText('{')).toEqual([expect.stringMatching(/not JSON/)]);
    expect(validateTrace([])).toEqual(['the trace is not a JSON object']);
    const bad = {
      traceEvents: [
        { name: 'k', ph: 'X', ts: 1, pid: 1, tid: 1 },
        { name: 'k', ph: 'X', ts: -1, dur: 2, pid: 1, tid: 1 },
        { name: 'm', ph: 'C', ts: 5, pid: 1, args: { a: 'x' } },
        { name: 'm', ph: 'C', ts: 4, pid: 1, args: { a: 1 } },
        { name: 'thread_name', ph: 'M', pid: 1, tid: 1, args: {} },
        { name: 'q', ph: 'Z', ts: 0, pid: 1 },
      ],
    };
    const p = validateTrace(bad);
    expect(p).toEqual([
      expect.stringMatching(/\[0\].*missing 'dur'/),
      expect.stringMatching(/\[1\].*ts must be >= 0/),
      expect.stringMatching(/\[2\].*counter value 'a' must be a number/),
      expect.stringMatching(/\[3\].*goes back in time/),
      expect.stringMatching(/\[4\].*needs args.name/),
      expect.stringMatching(/\[5\].*unknown phase/),
    ]);
  });
});
