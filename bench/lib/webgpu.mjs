/**
 * WebGPU pieces of the harness: the Vulkan driver choice for child processes (a real GPU when the
 * inherited environment finds one, else Chromium's SwiftShader), `navigator.gpu` in Node from the
 * `webgpu` npm package (Dawn; a runtime dependency of Tessera at the repository root), adapter facts,
 * and timing of asynchronous (queued) GPU work.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BENCH_DIR, median, runJsonChild } from './common.mjs';

/** Chromium's SwiftShader Vulkan driver (Debian's chromium package): a CPU implementation of Vulkan. */
export const SWIFTSHADER_ICD =
  process.env.BENCH_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';

/** The environment that makes the Vulkan loader use SwiftShader (Dawn also wants XDG_RUNTIME_DIR set). */
export function swiftshaderEnv(base = process.env) {
  return { ...base, VK_ICD_FILENAMES: SWIFTSHADER_ICD, XDG_RUNTIME_DIR: base.XDG_RUNTIME_DIR || '/tmp' };
}

/** True when an adapter's facts name SwiftShader (vendor, architecture, device or description). */
export function isSwiftShader(info) {
  return (
    !!info &&
    [info.vendor, info.architecture, info.device, info.description].some((s) => /swiftshader/i.test(s ?? ''))
  );
}

/** Plain, JSON-able facts of a GPUAdapter (or of a GPUAdapterInfo-like object). */
export function adapterFacts(adapterOrInfo) {
  if (!adapterOrInfo) return null;
  const info = adapterOrInfo.info ?? adapterOrInfo;
  const f = {
    vendor: info.vendor ?? null,
    architecture: info.architecture ?? null,
    device: info.device ?? null,
    description: info.description ?? null,
  };
  if (info.isFallbackAdapter !== undefined) f.isFallbackAdapter = !!info.isFallbackAdapter;
  f.swiftshader = isSwiftShader(f);
  return f;
}

/** One line describing an adapter. */
export function adapterLine(f) {
  if (!f) return 'no adapter';
  const parts = [f.vendor, f.architecture].filter(Boolean).join(' ');
  return `${parts || '?'}: ${f.description || '?'}${f.device ? ` (device ${f.device})` : ''}${f.swiftshader ? ' [SwiftShader, a CPU implementation of Vulkan]' : ''}`;
}

/**
 * WebGPU in Node: load the `webgpu` package (Dawn), put its GPU* constants (GPUBufferUsage,
 * GPUMapMode, GPUShaderStage, ...) on globalThis and, with `navigator: true`, expose the GPU as
 * `globalThis.navigator.gpu`, which is all that @tensorflow/tfjs-backend-webgpu needs to register.
 * Returns `{ gpu, webgpuVersion }`.
 */
export async function installWebGPU({ navigator = true } = {}) {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([]);
  if (navigator) {
    // Node 20 has no navigator global; Node 21+ has one whose `gpu` is undefined
    const nav = globalThis.navigator ?? {};
    Object.defineProperty(globalThis, 'navigator', {
      value: Object.assign(Object.create(Object.getPrototypeOf(nav)), nav, { gpu }),
      configurable: true,
      writable: true,
    });
  }
  let webgpuVersion = null;
  try {
    const { createRequire } = await import('node:module');
    webgpuVersion = createRequire(import.meta.url)('webgpu/package.json').version;
  } catch {
    /* version unknown */
  }
  return { gpu, webgpuVersion };
}

/**
 * Probe, in a child process with `env`, whether WebGPU finds an adapter. Result:
 * `{ ok, result: { adapter: facts|null, webgpu_version } }`.
 */
export function probeAdapter(env) {
  const lib = pathToFileURL(join(BENCH_DIR, 'lib', 'webgpu.mjs')).href;
  const code = `import(${JSON.stringify(lib)}).then(async (w) => { const { gpu, webgpuVersion } = await w.installWebGPU({ navigator: false }); const a = await gpu.requestAdapter(); console.log(JSON.stringify({ adapter: w.adapterFacts(a), webgpu_version: webgpuVersion })); process.exit(0); }).catch((e) => { console.log(JSON.stringify({ error: String((e && e.message) || e) })); process.exit(1); });`;
  return runJsonChild(process.execPath, ['--input-type=module', '-e', code], { env, timeoutMs: 60_000 });
}

/**
 * The environment of the WebGPU children. mode 'auto': the inherited environment when it finds an
 * adapter, else SwiftShader when its driver file exists; 'swiftshader': always SwiftShader; 'inherit':
 * never change the environment. Returns `{ env, adapter, webgpu_version, driver, note }`, or throws
 * with what was tried.
 */
export function webgpuChildEnv(mode = 'auto') {
  const tried = [];
  if (mode !== 'swiftshader') {
    const r = probeAdapter(process.env);
    if (r.ok && r.result.adapter)
      return {
        env: { ...process.env },
        adapter: r.result.adapter,
        webgpu_version: r.result.webgpu_version,
        driver: process.env.VK_ICD_FILENAMES
          ? `VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES}`
          : 'system Vulkan loader',
        note: 'adapter found with the inherited environment',
      };
    tried.push(
      `inherited environment${process.env.VK_ICD_FILENAMES ? ` (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES})` : ''}: ${r.ok ? 'no adapter' : r.error}`,
    );
  }
  if (mode !== 'inherit') {
    if (!existsSync(SWIFTSHADER_ICD))
      tried.push(`SwiftShader: ${SWIFTSHADER_ICD} does not exist (install chromium)`);
    else {
      const env = swiftshaderEnv();
      const r = probeAdapter(env);
      if (r.ok && r.result.adapter)
        return {
          env,
          adapter: r.result.adapter,
          webgpu_version: r.result.webgpu_version,
          driver: `VK_ICD_FILENAMES=${SWIFTSHADER_ICD}`,
          note:
            mode === 'swiftshader'
              ? 'SwiftShader forced (--swiftshader always)'
              : 'no adapter with the inherited environment: SwiftShader (CPU Vulkan) used instead',
        };
      tried.push(`SwiftShader (VK_ICD_FILENAMES=${SWIFTSHADER_ICD}): ${r.ok ? 'no adapter' : r.error}`);
    }
  }
  throw new Error(`no WebGPU adapter: ${tried.join('; ')}`);
}

/**
 * Time queued GPU work. A sample enqueues `launch()` `inner` times, then awaits `sync(last)` on the
 * last launch's value (a read back of its result, which the in-order queue completes after every
 * earlier launch); per-call time = sample time / inner, so one read back is amortized over the
 * sample. `inner` is calibrated so a sample lasts at least `minSampleMs` (the calibration run that
 * meets it counts as the first sample: it ran with the final `inner`). Each launch's value is
 * passed to `release` except the last, which is released after `sync`. Returns per-call milliseconds
 * `{ best, median, samples, inner }`.
 */
export async function timeGpu(
  launch,
  sync,
  release,
  { samples = 5, minSampleMs = 200, maxInner = 256 } = {},
) {
  const sample = async (inner) => {
    const t0 = performance.now();
    let last;
    for (let i = 0; i < inner; i++) {
      if (last !== undefined) release(last);
      last = launch();
    }
    await sync(last);
    const dt = performance.now() - t0;
    release(last);
    return dt;
  };
  let inner = 1;
  const per = [];
  for (;;) {
    const dt = await sample(inner);
    if (dt >= minSampleMs || inner >= maxInner) {
      // the calibration run that met the target used the final inner count: it is the first sample
      // (slow adapters, such as SwiftShader at n >= 512, take a sample per call)
      per.push(dt / inner);
      break;
    }
    inner = Math.min(
      maxInner,
      Math.max(inner * 2, Math.ceil((inner * minSampleMs * 1.2) / Math.max(dt, 1e-3))),
    );
  }
  while (per.length < samples) per.push((await sample(inner)) / inner);
  return { best: Math.min(...per), median: median(per), samples: per, inner };
}

