/**
 * A hand-written checker for the Chrome Trace Event Format (JSON object form), after the spec
 * "Trace Event Format" (Google, docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU):
 * written independently of src/memory/trace.ts so that a bug in the exporter cannot hide in a shared
 * assumption. Returns a list of problems (empty when the trace is valid).
 */

/** Phases and the fields each requires beyond `ph` (and `name`, required for all but a few). */
const REQUIRED: Record<string, readonly string[]> = {
  X: ['name', 'ts', 'dur', 'pid', 'tid'],
  B: ['name', 'ts', 'pid', 'tid'],
  E: ['ts', 'pid', 'tid'],
  C: ['name', 'ts', 'pid', 'args'],
  M: ['name', 'pid', 'args'],
  i: ['name', 'ts', 'pid'],
  I: ['name', 'ts', 'pid'],
};

/** Metadata event names the viewers understand, and the arg each one needs. */
const METADATA_ARGS: Record<string, string> = {
  process_name: 'name',
  process_labels: 'labels',
  process_sort_index: 'sort_index',
  thread_name: 'name',
  thread_sort_index: 'sort_index',
};

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validate the text of a trace file. Checks: it parses; it is an object with an array `traceEvents`;
 * `displayTimeUnit` is 'ms' or 'ns' when present; every event has a known phase and that phase's
 * required fields; `ts`, `dur`, `pid`, `tid` are finite numbers, `ts` and `dur` ≥ 0; 'X' events have
 * `dur`; counters' args are all finite numbers; counter samples are in non-decreasing `ts` order per
 * counter track (pid + name + id); metadata events use a known name with its argument.
 */
export function validateTraceText(text: string): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return [`not JSON: ${(e as Error).message}`];
  }
  return validateTrace(doc);
}

/** {@link validateTraceText} for an already parsed document. */
export function validateTrace(doc: unknown): string[] {
  const problems: string[] = [];
  if (!isObj(doc)) return ['the trace is not a JSON object'];
  if (!Array.isArray(doc.traceEvents)) return ['traceEvents is missing or not an array'];
  if (doc.displayTimeUnit !== undefined && doc.displayTimeUnit !== 'ms' && doc.displayTimeUnit !== 'ns')
    problems.push(`displayTimeUnit must be 'ms' or 'ns', got ${JSON.stringify(doc.displayTimeUnit)}`);
  const lastCounterTs = new Map<string, number>();
  doc.traceEvents.forEach((e: unknown, i: number) => {
    const where = `traceEvents[${i}]`;
    if (!isObj(e)) return void problems.push(`${where} is not an object`);
    const ph = e.ph;
    if (typeof ph !== 'string' || !(ph in REQUIRED))
      return void problems.push(`${where}: unknown phase ${JSON.stringify(ph)}`);
    for (const f of REQUIRED[ph]!) if (!(f in e)) problems.push(`${where} (ph ${ph}): missing '${f}'`);
    if ('name' in e && typeof e.name !== 'string') problems.push(`${where}: name must be a string`);
    if ('cat' in e && typeof e.cat !== 'string') problems.push(`${where}: cat must be a string`);
    for (const f of ['pid', 'tid'] as const)
      if (f in e && !isNum(e[f])) problems.push(`${where}: ${f} must be a number`);
    for (const f of ['ts', 'dur'] as const) {
      if (!(f in e)) continue;
      if (!isNum(e[f])) problems.push(`${where}: ${f} must be a finite number, got ${JSON.stringify(e[f])}`);
      else if (e[f] < 0) problems.push(`${where}: ${f} must be >= 0, got ${e[f]}`);
    }
    if ('args' in e && !isObj(e.args)) problems.push(`${where}: args must be an object`);
    if (ph === 'C' && isObj(e.args)) {
      const entries = Object.entries(e.args);
      if (entries.length === 0) problems.push(`${where}: a counter needs at least one value`);
      for (const [k, v] of entries)
        if (!isNum(v))
          problems.push(`${where}: counter value '${k}' must be a number, got ${JSON.stringify(v)}`);
      const key = `${String(e.pid)}|${String(e.name)}|${String(e.id ?? '')}`;
      const prev = lastCounterTs.get(key);
      if (isNum(e.ts)) {
        if (prev !== undefined && e.ts < prev)
          problems.push(`${where}: counter '${String(e.name)}' goes back in time (${e.ts} < ${prev})`);
        lastCounterTs.set(key, e.ts);
      }
    }
    if (ph === 'M' && typeof e.name === 'string') {
      const arg = METADATA_ARGS[e.name];
      if (arg === undefined) problems.push(`${where}: unknown metadata event '${e.name}'`);
      else if (!isObj(e.args) || !(arg in e.args))
        problems.push(`${where}: metadata '${e.name}' needs args.${arg}`);
    }
  });
  return problems;
}
