import type { KernelIR, Stmt } from '../codegen/ir.js';
import { printKernel } from '../codegen/ir.js';
import { lowerKernel } from '../codegen/lower.js';
import { seedKey } from '../codegen/prng.js';
import { debugLevel, debugLog } from '../debug.js';
import { itemsize } from '../dtype.js';
import type { LazyNode } from '../graph/node.js';
import { emit, hasListeners, isKernelProfiling, now } from '../memory/events.js';
import { checkBudget, recordAlloc, recordFree } from '../memory/stats.js';
import { DeviceBuffer } from '../runtime/buffer.js';
import type { Binding, DeviceMemory, Launch, Runtime } from '../runtime/device.js';
import type { MemoryPlan } from '../schedule/memory.js';
import { checkPlan, planMemory } from '../schedule/memory.js';
import type { Schedule, ScheduledKernel } from '../schedule/schedule.js';
import { createSchedule } from '../schedule/schedule.js';

/** Engine options; tests flip these to compare planned and unplanned execution. */
export const engineOptions = {
  /** Pack intermediates into one arena by lifetime (off: one region per intermediate). */
  memoryPlanning: true,
  /** Verify after planning that no two live buffers overlap. Cheap; on in tests. */
  checkPlans: false,
};

/** What the last realize did, for tests, benchmarks and `TESSERA_DEBUG`. */
export interface RealizeStats {
  kernels: number;
  kinds: Record<string, number>;
  arenaBytes: number;
  naiveBytes: number;
  compiled: number;
}

let last: RealizeStats = { kernels: 0, kinds: {}, arenaBytes: 0, naiveBytes: 0, compiled: 0 };
const totals = { kernels: 0, realizes: 0 };
export function lastRealizeStats(): RealizeStats {
  return last;
}
export function realizeTotals(): { kernels: number; realizes: number } {
  return { ...totals };
}

// Lowered kernels, by structural key: the same work on other buffers reuses its IR and compiled code.
const lowered = new Map<string, KernelIR>();

export function lowerCached(k: ScheduledKernel): KernelIR {
  let ir = lowered.get(k.structuralKey);
  if (!ir) lowered.set(k.structuralKey, (ir = lowerKernel(k)));
  return ir;
}

export interface PlannedSchedule {
  readonly schedule: Schedule;
  readonly plan: MemoryPlan;
}

/** Schedule and plan without running: what `TESSERA_DEBUG=2` prints and what tests count. */
export function planSchedule(nodes: readonly LazyNode[], rt: Runtime, inPlace?: ReadonlyMap<LazyNode, DeviceBuffer>): PlannedSchedule {
  const outs = [...new Set(nodes)].filter((n) => n.op !== 'BUFFER');
  const late = inPlace ? new Set(inPlace.keys()) : undefined;
  const lateTargets = inPlace ? new Map([...inPlace].map(([n, b]) => [n, b as unknown])) : undefined;
  const schedule = createSchedule(outs, { maxBuffersPerKernel: rt.limits.maxBuffersPerKernel, late, lateTargets });
  const outputSet = new Set(outs);
  let plan = planMemory(schedule.kernels, outputSet, rt.limits.bufferAlignment);
  if (!engineOptions.memoryPlanning) plan = unplanned(plan);
  if (engineOptions.checkPlans) checkPlan(plan);
  return { schedule, plan };
}

/** One region per intermediate, back to back: the baseline the planner is measured against. */
function unplanned(plan: MemoryPlan): MemoryPlan {
  let offset = 0;
  const buffers = new Map(
    [...plan.buffers].map(([n, b]) => {
      const placed = { ...b, offset };
      offset += b.bytes;
      return [n, placed] as const;
    }),
  );
  return { ...plan, buffers, arenaBytes: offset };
}

export function describeSchedule({ schedule, plan }: PlannedSchedule): string {
  const lines: string[] = [];
  const name = (n: LazyNode) => (n.op === 'BUFFER' ? `buf#${n.buffer.id}` : `t${n.id}`);
  for (const k of schedule.kernels) {
    const p = plan.buffers.get(k.out);
    const where = p ? `arena@${p.offset}` : 'output';
    const ins = k.inputs.map((i) => `${name(i)}:${i.dtype}[${i.shape}]`).join(', ');
    const c = k.contraction;
    const extra = c ? ` gemm(b=${c.batch} m=${c.m} n=${c.n} k=${c.k}; prologue=[${c.prologue}] epilogue=[${c.epilogue}])` : '';
    lines.push(`  k${k.index} ${k.kind.padEnd(11)} ${name(k.out)}:${k.out.dtype}[${k.out.shape}] (${where}) <- ${ins || '-'} ops=[${k.ops.join(',')}]${extra}`);
  }
  const ratio = plan.arenaBytes ? (plan.naiveBytes / plan.arenaBytes).toFixed(2) : '-';
  lines.push(`  memory plan: planned peak ${plan.arenaBytes} B vs naive ${plan.naiveBytes} B (${ratio}x), live lower bound ${plan.liveBytesPeak} B`);
  return lines.join('\n');
}

/** One realize as a jit capture records it: enough to replay it on the same buffers. */
export interface CapturedRun {
  readonly rt: Runtime;
  readonly launches: readonly Launch[];
  readonly copies: readonly { from: DeviceBuffer; to: DeviceBuffer }[];
  /** The run's arena, kept alive (and accounted) by the capture. */
  readonly arena: DeviceMemory | undefined;
  readonly arenaBytes: number;
  /** The arena's telemetry allocation id. */
  readonly arenaId: number;
  /** Buffers the run created, each retained once by the capture. */
  readonly owned: readonly DeviceBuffer[];
  /** Buffers that existed before the run (parameters, state, inputs), checked before each replay. */
  readonly borrowed: readonly DeviceBuffer[];
}

let recorder: CapturedRun[] | undefined;

/** Record every realize until `endCapture` (used by `jit`). */
export function beginCapture(): void {
  if (recorder) throw new Error('jit: captures cannot nest');
  recorder = [];
}
export function endCapture(): CapturedRun[] {
  const r = recorder ?? [];
  recorder = undefined;
  return r;
}
export function isCapturing(): boolean {
  return recorder !== undefined;
}

interface PreparedRun {
  readonly launches: Launch[];
  readonly result: Map<LazyNode, DeviceBuffer>;
  /** In-place results that could not be written directly: copied into their target after the launches. */
  readonly copies: { from: DeviceBuffer; to: DeviceBuffer }[];
  finish(ok: boolean): void;
}

/**
 * Whether kernel `k` may write its result straight into `target`: no later kernel reads the buffer,
 * and within `k` every read of it is at the element being written (read-then-write of one element).
 */
function canWriteInPlace(k: ScheduledKernel, ir: KernelIR, target: DeviceBuffer, later: readonly ScheduledKernel[]): boolean {
  const readsTarget = (n: LazyNode) => n.op === 'BUFFER' && n.buffer === target;
  if (later.some((l) => l.inputs.some(readsTarget))) return false;
  const params = new Set(k.inputs.flatMap((n, i) => (readsTarget(n) ? [i + 1] : [])));
  if (params.size === 0) return true;
  let storeKey: string | undefined;
  const loads: string[] = [];
  let ok = true;
  const walk = (stmts: readonly Stmt[]) => {
    for (const s of stmts) {
      if (s.k === 'loop') walk(s.body);
      else if (s.k === 'store') storeKey = s.idx.key;
      else if (s.k === 'let' && s.expr.k === 'gather' && params.has(s.expr.param)) ok = false;
      else if (s.k === 'let' && s.expr.k === 'load' && params.has(s.expr.param)) {
        if (s.expr.valid.length) ok = false;
        loads.push(s.expr.idx.key);
      }
    }
  };
  walk(ir.body);
  // In a contraction an operand cannot read the output's own element (operands index by m,k or k,n),
  // so a matching load can only sit in the epilogue, which reads each element before writing it.
  return ok && loads.every((l) => l === storeKey);
}

/** Schedule, plan, lower and compile (one batch), allocate, and bind every launch. */
function prepare(nodes: readonly LazyNode[], rt: Runtime, inPlace?: ReadonlyMap<LazyNode, DeviceBuffer>): PreparedRun {
  const result = new Map<LazyNode, DeviceBuffer>();
  const copies: { from: DeviceBuffer; to: DeviceBuffer }[] = [];
  const planned = planSchedule(nodes, rt, inPlace);
  const { schedule, plan } = planned;
  // The realized buffers the kernels read: checked once here, and borrowed by a jit capture.
  const sources = new Set<DeviceBuffer>();
  for (const k of schedule.kernels) for (const i of k.inputs) if (i.op === 'BUFFER') sources.add(i.buffer);
  for (const b of sources) b.assertLive('compute with');
  for (const t of inPlace?.values() ?? []) t.assertLive('assign into');
  const before = lowered.size;
  const irs = schedule.kernels.map(lowerCached);
  const compiled = rt.compile(irs);
  if (debugLevel() >= 2) {
    debugLog(`realize: ${schedule.kernels.length} kernels\n${describeSchedule(planned)}`);
    if (debugLevel() >= 3) for (const ir of irs) debugLog(printKernel(ir));
  }
  if (plan.arenaBytes > 0) checkBudget(rt.name, plan.arenaBytes, `the memory plan of ${schedule.kernels.length} kernels (arena)`);
  const arena = plan.arenaBytes > 0 ? rt.alloc(plan.arenaBytes) : undefined;
  const arenaId = arena ? recordAlloc(rt.name, plan.arenaBytes, 'activation', 'u8', [plan.arenaBytes], 'arena') : 0;
  const finish = (ok: boolean) => {
    if (ok && recorder) {
      // A jit capture keeps everything this run touched: the arena, and a reference to every buffer.
      // Buffers created by this run are owned (retained) by the capture; buffers that existed before
      // (parameters, state, inputs) are borrowed: a replay checks they are still alive.
      const owned = new Set<DeviceBuffer>();
      for (const [n, b] of result) if (!inPlace?.has(n)) owned.add(b);
      for (const c of copies) owned.add(c.from);
      const borrowed = new Set<DeviceBuffer>();
      for (const b of sources) if (!owned.has(b)) borrowed.add(b);
      for (const t of inPlace?.values() ?? []) borrowed.add(t);
      for (const b of owned) b.retain();
      recorder.push({ rt, launches, copies: copies.map((c) => ({ from: c.from, to: c.to })), arena, arenaBytes: plan.arenaBytes, arenaId, owned: [...owned], borrowed: [...borrowed] });
    }
    for (const c of copies) c.from.release();
    if (!ok) for (const [n, b] of result) if (!inPlace?.has(n)) b.release();
    if (arena && !(ok && recorder)) {
      rt.free(arena);
      recordFree(arenaId);
    }
    if (!ok) return;
    const kinds: Record<string, number> = {};
    for (const k of schedule.kernels) kinds[k.kind] = (kinds[k.kind] ?? 0) + 1;
    last = { kernels: schedule.kernels.length, kinds, arenaBytes: plan.arenaBytes, naiveBytes: plan.naiveBytes, compiled: lowered.size - before };
    totals.kernels += schedule.kernels.length;
    totals.realizes++;
    if (debugLevel() === 1) debugLog(`realize: ${schedule.kernels.length} kernels, arena ${plan.arenaBytes} B (naive ${plan.naiveBytes} B)`);
  };
  const launches: Launch[] = [];
  try {
    for (const k of schedule.kernels) {
      let outBinding: Binding;
      const p = plan.buffers.get(k.out);
      const target = inPlace?.get(k.out);
      if (p) outBinding = { mem: arena!, byteOffset: p.offset };
      else if (target && canWriteInPlace(k, irs[k.index]!, target, schedule.kernels.slice(k.index + 1))) {
        result.set(k.out, target);
        outBinding = { mem: target.mem, byteOffset: 0 };
      } else {
        const buf = new DeviceBuffer(rt, k.out.dtype, k.out.numel);
        if (target) {
          copies.push({ from: buf, to: target });
          result.set(k.out, target);
        } else result.set(k.out, buf);
        outBinding = { mem: buf.mem, byteOffset: 0 };
      }
      const args: Binding[] = [outBinding];
      for (const i of k.inputs) {
        const ip = plan.buffers.get(i);
        if (ip) args.push({ mem: arena!, byteOffset: ip.offset });
        else if (i.op === 'BUFFER') args.push({ mem: i.buffer.mem, byteOffset: 0 });
        else args.push({ mem: (copies.find((c) => c.to === result.get(i))?.from ?? result.get(i)!).mem, byteOffset: 0 });
      }
      const scalars = new Uint32Array(k.scalars.length);
      for (let s = 0; s < k.scalars.length; s += 2) {
        scalars[s] = seedKey(k.scalars[s]!);
        scalars[s + 1] = k.scalars[s + 1]!;
      }
      launches.push({ kernel: compiled[k.index]!, args, scalars });
    }
  } catch (e) {
    finish(false);
    throw e;
  }
  return { launches, result, copies, finish };
}

function applyCopies(run: PreparedRun, rt: Runtime): void {
  for (const { from, to } of run.copies) rt.copy({ mem: from.mem, byteOffset: 0 }, { mem: to.mem, byteOffset: 0 }, Math.min(from.nbytes, to.nbytes));
}

/**
 * Compute `nodes` on `rt`: schedule, plan, lower, compile (one batch), launch. Returns one fresh buffer
 * per distinct non-BUFFER node; intermediates live in a temporary arena freed before returning.
 */
export function realizeNodes(nodes: readonly LazyNode[], rt: Runtime, inPlace?: ReadonlyMap<LazyNode, DeviceBuffer>): Map<LazyNode, DeviceBuffer> {
  const run = prepare(nodes, rt, inPlace);
  try {
    runLaunches(rt, run.launches, 'realize', (l) => rt.launch(l.kernel, l.args, l.scalars));
    applyCopies(run, rt);
  } catch (e) {
    run.finish(false);
    throw e;
  }
  run.finish(true);
  return run.result;
}

/**
 * Run a program's launches: batched into one call when the runtime can, one by one when kernels are
 * profiled (`setKernelProfiling`, on synchronous runtimes: a queued GPU launch has no host-side duration)
 * or printed (`TESSERA_DEBUG=4`). Publishes a 'run' event (and 'kernel' events when profiling);
 * timestamps are start times.
 */
export function runLaunches(rt: Runtime, launches: readonly Launch[], label: string, runOne: (l: Launch) => void): void {
  const profile = isKernelProfiling() && rt.synchronous;
  const debug = debugLevel() >= 4;
  const start = now();
  if (rt.launchMany && !profile && !debug) rt.launchMany(launches);
  else {
    for (const [i, l] of launches.entries()) {
      const t0 = now();
      runOne(l);
      const dur = now() - t0;
      if (profile) emit({ type: 'kernel', ts: t0, dur, device: rt.name, name: l.kernel.ir.name });
      if (debug) debugLog(`  k${i} ${l.kernel.ir.name}: ${dur.toFixed(3)} ms`);
    }
  }
  if (hasListeners()) emit({ type: 'run', ts: start, dur: now() - start, device: rt.name, kernels: launches.length, label });
}

/**
 * `realizeNodes` that leaves the JavaScript thread free while kernels run, on runtimes that can
 * (the CPU backend runs the whole program on a worker thread); others run synchronously.
 */
export async function realizeNodesAsync(nodes: readonly LazyNode[], rt: Runtime, inPlace?: ReadonlyMap<LazyNode, DeviceBuffer>): Promise<Map<LazyNode, DeviceBuffer>> {
  if (!rt.launchManyAsync) return realizeNodes(nodes, rt, inPlace);
  const run = prepare(nodes, rt, inPlace);
  try {
    const start = now();
    await rt.launchManyAsync(run.launches);
    if (hasListeners()) emit({ type: 'run', ts: start, dur: now() - start, device: rt.name, kernels: run.launches.length, label: 'realize' });
    applyCopies(run, rt);
  } catch (e) {
    run.finish(false);
    throw e;
  }
  run.finish(true);
  return run.result;
}

/** Copy host bytes into a fresh device buffer. */
export function uploadBuffer(rt: Runtime, dtype: import('../dtype.js').DType, bytes: Uint8Array, numel: number): DeviceBuffer {
  const buf = new DeviceBuffer(rt, dtype, numel);
  if (bytes.byteLength !== numel * itemsize[dtype]) throw new Error(`upload: ${bytes.byteLength} bytes for ${numel} ${dtype}`);
  rt.write(buf.mem, 0, bytes);
  return buf;
}
