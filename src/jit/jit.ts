import { DisposedError, ValueError } from '../errors.js';
import { recordFree } from '../memory/stats.js';
import { DeviceBuffer } from '../runtime/buffer.js';
import type { DeviceMemory, Launch, Runtime } from '../runtime/device.js';
import { drawCounter } from '../tensor/context.js';
import type { CapturedRun } from '../tensor/realize.js';
import { beginCapture, endCapture, runLaunches } from '../tensor/realize.js';
import { emit, hasListeners, isKernelProfiling, now } from '../memory/events.js';
import { Tensor, realize } from '../tensor/tensor.js';
import { bufferNode } from '../graph/node.js';

/** Statistics of a jitted function, for tests and benchmarks. */
export interface JitStats {
  /** Calls that ran the function normally (warm-up and capture, per signature). */
  traced: number;
  /** Calls served by replaying captured kernels. */
  replayed: number;
  /** Distinct input signatures seen. */
  signatures: number;
  /** Kernel launches (and copies) in the most recent replay. */
  launchesPerReplay: number;
}

type TensorArgs = readonly Tensor[];

interface Plan {
  rt: Runtime;
  /** Steps in order: launches with bindings, some to be rebound per call. */
  steps: { launch: Launch; rebind: { arg: number; from: 'input' | 'output'; index: number }[] }[];
  /** Where each argument's buffer was bound at capture (by memory object). */
  inputMems: DeviceMemory[];
  outputs: { dtype: Tensor['dtype']; shape: number[]; device: string }[];
  outputShape: 'single' | 'array' | 'none';
  runs: CapturedRun[];
  randDraws: number;
  randBase: number;
  randScalars: { step: number; slot: number; base: number }[];
}

interface Entry {
  calls: number;
  plan?: Plan;
}

/** A function of tensors, compiled once per input signature into a fixed sequence of kernels. */
export type Jitted<R> = ((...args: Tensor[]) => R) & {
  readonly stats: JitStats;
  /**
   * The same call, but a replay runs on a worker thread where the device allows (cpu), leaving the
   * JavaScript event loop free (tracing calls still run synchronously). For servers.
   */
  async(...args: Tensor[]): Promise<R>;
  /** Drop every capture (their arenas and buffer references). */
  reset(): void;
};

function signature(args: TensorArgs): string {
  return args.map((t) => `${t.device}:${t.dtype}[${t.shape.join(',')}]`).join(';');
}

function collectOutputs(r: unknown): { tensors: Tensor[]; shape: Plan['outputShape'] } {
  if (r === undefined || r === null) return { tensors: [], shape: 'none' };
  if (r instanceof Tensor) return { tensors: [r], shape: 'single' };
  if (Array.isArray(r) && r.every((x) => x instanceof Tensor)) return { tensors: r as Tensor[], shape: 'array' };
  throw new ValueError('jit: the function must return a Tensor, an array of Tensors, or nothing');
}

/**
 * Compile a step function. The first call with a new input signature (shapes, dtypes, devices of the
 * tensor arguments) runs `fn` normally (state gets created, kernels compiled); the second runs it while
 * recording every kernel launch; later calls replay the recording on the same buffers, with the new
 * arguments' buffers swapped in: no graph building, scheduling or compiling, and on the CPU backend one
 * native call for the whole step.
 *
 * Contract, as with tinygrad's TinyJit: everything that varies between calls must come in through the
 * tensor arguments or through tensors updated in place (`assign`, `write`, such as an optimizer's
 * learning rate); host code inside `fn` (reading values, building tensors from JavaScript data) runs
 * only while tracing. Random draws (dropout) advance on every replay. Returned tensors are fresh each
 * call. A replay that would touch a buffer freed since the capture throws a `DisposedError`.
 */
export function jit<R extends Tensor | Tensor[] | void>(fn: (...args: Tensor[]) => R): Jitted<R> {
  const entries = new Map<string, Entry>();
  const stats: JitStats = { traced: 0, replayed: 0, signatures: 0, launchesPerReplay: 0 };

  const entryFor = (args: TensorArgs): Entry => {
    for (const [i, a] of args.entries()) if (!(a instanceof Tensor)) throw new ValueError(`jit: argument ${i} is not a Tensor`);
    realize(...args);
    const sig = signature(args);
    let e = entries.get(sig);
    if (!e) {
      entries.set(sig, (e = { calls: 0 }));
      stats.signatures++;
    }
    return e;
  };

  const callAsync = async (...args: Tensor[]): Promise<R> => {
    const e = entryFor(args);
    if (e.plan) {
      e.calls++;
      return (await replayAsync(e.plan, args)) as R;
    }
    return call(...args);
  };

  const call = (...args: Tensor[]): R => {
    const e = entryFor(args);
    e.calls++;
    if (e.plan) return replay(e.plan, args) as R;
    stats.traced++;
    if (e.calls === 1) {
      const r = fn(...args);
      realize(...collectOutputs(r).tensors);
      return r;
    }
    const randBefore = drawCounter(0).counter;
    beginCapture();
    let r: R;
    let runs: CapturedRun[];
    try {
      r = fn(...args);
      realize(...collectOutputs(r).tensors);
    } finally {
      runs = endCapture();
    }
    const randAfter = drawCounter(0).counter;
    e.plan = buildPlan(runs, args, collectOutputs(r), randBefore, (randAfter - randBefore) >>> 0);
    return r;
  };

  const replay = (plan: Plan, args: TensorArgs): R | Tensor | Tensor[] | undefined => {
    const { launches, finish } = prepareReplay(plan, args);
    const rt = plan.rt;
    runLaunches(rt, launches, 'jit replay', (l) => runStep(rt, l));
    return finish();
  };

  const replayAsync = async (plan: Plan, args: TensorArgs): Promise<R | Tensor | Tensor[] | undefined> => {
    const { launches, finish } = prepareReplay(plan, args);
    const rt = plan.rt;
    if (rt.launchManyAsync && !isKernelProfiling()) {
      const start = now();
      await rt.launchManyAsync(launches);
      if (hasListeners()) emit({ type: 'run', ts: start, dur: now() - start, device: rt.name, kernels: launches.length, label: 'jit replay' });
    } else runLaunches(rt, launches, 'jit replay', (l) => runStep(rt, l));
    return finish();
  };

  /** Rebind a plan's launches to this call's arguments and fresh outputs. */
  const prepareReplay = (plan: Plan, args: TensorArgs): { launches: Launch[]; finish: () => R | Tensor | Tensor[] | undefined } => {
    for (const run of plan.runs) {
      for (const b of run.borrowed) {
        if (b.disposed && !plan.inputMems.includes(b.mem)) {
          throw new DisposedError(`jit: the captured step uses buffer #${b.id} (${b.dtype}[${b.numel}]), which was freed after the capture; a tensor the step reads was disposed`);
        }
      }
    }
    const inputs = args.map((a) => a.node.buffer);
    const outputs = plan.outputs.map((o) => new DeviceBuffer(plan.rt, o.dtype, o.shape.reduce((p, d) => p * d, 1)));
    // Random streams move on: shift every RAND counter by this call's draw.
    const delta = plan.randDraws ? (drawCounter(plan.randDraws).counter - plan.randBase) >>> 0 : 0;
    const launches: Launch[] = plan.steps.map(({ launch, rebind }) => {
      if (rebind.length === 0 && delta === 0) return launch;
      const a = [...launch.args];
      for (const r of rebind) {
        const buf = r.from === 'input' ? inputs[r.index]! : outputs[r.index]!;
        a[r.arg] = { mem: buf.mem, byteOffset: 0 };
      }
      return { ...launch, args: a };
    });
    if (delta) {
      for (const { step, slot, base } of plan.randScalars) {
        const l = launches[step]!;
        const sc = new Uint32Array(l.scalars!);
        sc[slot] = (base + delta) >>> 0;
        launches[step] = { ...l, scalars: sc };
      }
    }
    const finish = () => {
      stats.replayed++;
      stats.launchesPerReplay = launches.length;
      const made = plan.outputs.map((o, i) => new Tensor(bufferNode(outputs[i]!, o.shape), o.device));
      return plan.outputShape === 'none' ? undefined : plan.outputShape === 'single' ? made[0] : made;
    };
    return { launches, finish };
  };

  const reset = () => {
    for (const e of entries.values()) if (e.plan) releasePlan(e.plan);
    entries.clear();
  };

  return Object.assign(call, { stats, reset, async: callAsync }) as Jitted<R>;
}

/** On runtimes without `copyLaunch`, a copy step carries `copyBytes` and binds [dst, src]. */
function runStep(rt: Runtime, l: Launch): void {
  const bytes = (l as Launch & { copyBytes?: number }).copyBytes;
  if (bytes !== undefined) rt.copy(l.args[1]!, l.args[0]!, bytes);
  else rt.launch(l.kernel, l.args, l.scalars);
}

function buildPlan(runs: CapturedRun[], args: TensorArgs, out: { tensors: Tensor[]; shape: Plan['outputShape'] }, randBase: number, randDraws: number): Plan {
  if (runs.length === 0) throw new ValueError('jit: the function computed nothing (no realize happened while capturing)');
  const rt = runs[0]!.rt;
  if (runs.some((r) => r.rt !== rt)) throw new ValueError('jit: a captured step must run on one device');
  const inputMems = args.map((a) => a.node.buffer.mem);
  for (const t of out.tensors) t.realize();
  const outputMems = out.tensors.map((t) => t.node.buffer.mem);
  const steps: Plan['steps'] = [];
  const randScalars: Plan['randScalars'] = [];
  const add = (launch: Launch) => {
    const rebind: Plan['steps'][number]['rebind'] = [];
    launch.args.forEach((b, arg) => {
      const i = inputMems.indexOf(b.mem);
      if (i >= 0) rebind.push({ arg, from: 'input', index: i });
      const o = outputMems.indexOf(b.mem);
      if (o >= 0) rebind.push({ arg, from: 'output', index: o });
    });
    steps.push({ launch, rebind });
  };
  for (const run of runs) {
    for (const l of run.launches) {
      const step = steps.length;
      add(l);
      // RAND scalars come in (key, counter) pairs; counters sit at odd slots.
      if (l.scalars) for (let s = 1; s < l.scalars.length; s += 2) randScalars.push({ step, slot: s, base: l.scalars[s]! });
    }
    for (const c of run.copies) {
      const src = { mem: c.from.mem, byteOffset: 0 };
      const dst = { mem: c.to.mem, byteOffset: 0 };
      const bytes = Math.min(c.from.nbytes, c.to.nbytes);
      add(rt.copyLaunch ? rt.copyLaunch(src, dst, bytes) : ({ kernel: { ir: { name: 'copy' } }, args: [dst, src], copyBytes: bytes } as unknown as Launch));
    }
  }
  return {
    rt,
    steps,
    inputMems,
    outputs: out.tensors.map((t) => ({ dtype: t.dtype, shape: t.shape, device: t.device })),
    outputShape: out.shape,
    runs,
    randDraws,
    randBase,
    randScalars: randDraws ? randScalars : [],
  };
}

function releasePlan(plan: Plan): void {
  for (const run of plan.runs) {
    for (const b of run.owned) b.release();
    if (run.arena) {
      run.rt.free(run.arena);
      recordFree(run.arenaId);
    }
  }
}
