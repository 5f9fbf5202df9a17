/**
 * Visualization: the live memory dashboard (`startDashboard`) and the bounded, downsampling history it
 * keeps. The Chrome trace export lives with the telemetry stream, in `src/memory/trace.ts`.
 * @packageDocumentation
 */
export { startDashboard } from './dashboard.js';
export type {
  Dashboard,
  DashboardOptions,
  MemorySample,
  PeakMarker,
  Snapshot,
  StepRecord,
  TensorRow,
  Tick,
} from './dashboard.js';
export { DownsampledHistory, TIME_TIERS } from './history.js';
export type { HistoryOptions, TierSpec } from './history.js';
