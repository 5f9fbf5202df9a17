import { DeviceError } from '../errors.js';
import type { Runtime } from '../runtime/device.js';
import { getRuntime, listDevices, resolveDevice } from '../runtime/registry.js';
import { WebGPURuntime } from '../runtime/webgpu/backend.js';

/** One device as `tessera info` reports it. */
export interface DeviceReport {
  name: string;
  available: boolean;
  /** Why the device cannot be used here (when not available). */
  reason?: string;
  fingerprint?: string;
  maxBuffersPerKernel?: number;
  bufferAlignment?: number;
  /** WebGPU: the adapter, its features and the limits that matter to kernels. */
  adapter?: { vendor: string; architecture: string; device: string; description: string };
  features?: readonly string[];
  limits?: Readonly<Record<string, number>>;
  /** cpu: the GEMM micro-kernel's instruction set and whether bf16 products use a bf16 dot product. */
  gemm?: { isa: string; bf16Dot: boolean };
}

/** Limits printed for WebGPU adapters (the ones the scheduler and runtime respect). */
const WEBGPU_LIMITS = [
  'maxStorageBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'minStorageBufferOffsetAlignment',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupStorageSize',
];

function report(name: string, rt: Runtime): DeviceReport {
  const r: DeviceReport = {
    name,
    available: true,
    fingerprint: rt.fingerprint(),
    maxBuffersPerKernel: rt.limits.maxBuffersPerKernel,
    bufferAlignment: rt.limits.bufferAlignment,
  };
  if ('gemmInfo' in rt) r.gemm = (rt as Runtime & { gemmInfo: { isa: string; bf16Dot: boolean } }).gemmInfo;
  if (rt instanceof WebGPURuntime) {
    const { vendor, architecture, device, description, features, limits } = rt.info;
    r.adapter = { vendor, architecture, device, description };
    r.features = features;
    r.limits = Object.fromEntries(WEBGPU_LIMITS.filter((k) => k in limits).map((k) => [k, limits[k]!]));
  }
  return r;
}

/** Probe every registered device (starting each), and say which one 'auto' picks. */
export function probeDevices(): { devices: DeviceReport[]; auto: string } {
  const devices: DeviceReport[] = [];
  for (const name of listDevices()) {
    if (name === 'auto') continue;
    try {
      devices.push(report(name, getRuntime(name)));
    } catch (e) {
      if (!(e instanceof DeviceError)) throw e;
      devices.push({ name, available: false, reason: e.message });
    }
  }
  return { devices, auto: resolveDevice('auto') };
}

const fmtBytes = (n: number) => (n >= 2 ** 30 ? `${n / 2 ** 30} GiB` : n >= 2 ** 20 ? `${n / 2 ** 20} MiB` : `${n} B`);

/** Human-readable `tessera info`. */
export function formatDeviceReport({ devices, auto }: { devices: DeviceReport[]; auto: string }): string {
  const lines: string[] = [];
  for (const d of devices) {
    if (!d.available) {
      lines.push(`${d.name}: not available (${d.reason})`);
      continue;
    }
    lines.push(`${d.name}: ${d.fingerprint}`);
    lines.push(`  kernel buffers <= ${d.maxBuffersPerKernel}, arena alignment ${d.bufferAlignment} B`);
    if (d.gemm) lines.push(`  gemm: ${d.gemm.isa} micro-kernel; bf16 products: ${d.gemm.bf16Dot ? 'bf16 dot product (vdpbf16ps)' : 'widened to f32'}`);
    if (d.adapter) {
      const a = d.adapter;
      lines.push(`  adapter: ${[a.vendor, a.architecture, a.device, a.description].filter((s) => s).join(' / ') || 'unknown'}`);
      for (const [k, v] of Object.entries(d.limits ?? {})) lines.push(`  ${k} = ${/Size$/.test(k) ? fmtBytes(v) : v}`);
      lines.push(`  features: ${(d.features ?? []).join(', ') || '-'}`);
    }
  }
  lines.push(`auto -> ${auto}`);
  return lines.join('\n');
}
