/**
 * The live memory dashboard: a small HTTP server that serves the page in `web/dashboard/` and streams
 * aggregated telemetry to it with Server-Sent Events.
 *
 * Routes:
 * - `GET /`: the page; `GET /main.js`, `GET /dashboard.css`: its script and style (plain ES module and
 *   CSS, served as they are: no build step);
 * - `GET /vendor/uPlot.esm.js`, `GET /vendor/uPlot.min.css`: uPlot, straight from its package (a runtime
 *   dependency), which the page imports as `uplot` through an import map;
 * - `GET /events`: the SSE stream: first `history` (a {@link Snapshot}: the downsampled samples, steps,
 *   peak markers, current largest tensors), then a `tick` (a {@link Tick}) every sampling interval;
 * - `GET /history`: the same snapshot as JSON (the page refetches it to downsample its own copy).
 *
 * Everything is aggregated once per tick, whatever the number of open pages.
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TesseraError, ValueError } from '../errors.js';
import type { TelemetryOptions } from './telemetry.js';
import { Telemetry } from './telemetry.js';

export type { MemorySample, PeakMarker, Snapshot, StepRecord, TensorRow, Tick } from './telemetry.js';

/** Options of {@link startDashboard}. */
export interface DashboardOptions extends Omit<TelemetryOptions, 'maxSteps' | 'topTensors'> {
  /** TCP port (default 8090; 0 picks a free one). */
  port?: number;
  /** Interface to listen on (default 127.0.0.1: telemetry names tensors, so it stays local by default). */
  host?: string;
}

/** A running dashboard. */
export interface Dashboard {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:8090`. */
  url: string;
  /** Stop sampling, end the event streams and stop listening. Idempotent. */
  close(): Promise<void>;
}

/** The package root: this file is `src/viz/dashboard.ts` or `dist/viz/dashboard.js`, two levels down. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PAGE_DIR = join(ROOT, 'web', 'dashboard');
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.esm.js'));

/** URL path → file and content type: a fixed table, so no request path ever reaches the file system. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: join(PAGE_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/index.html': { file: join(PAGE_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/main.js': { file: join(PAGE_DIR, 'main.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: join(PAGE_DIR, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.esm.js': { file: join(UPLOT_DIR, 'uPlot.esm.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { file: join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** One open event stream. */
interface Client {
  res: ServerResponse;
  /** The socket's buffer is full: skip ticks until it drains (the server's history still has them). */
  blocked: boolean;
}

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Start the dashboard server and begin sampling the telemetry stream (every `sampleMs`, default 250 ms).
 *
 * ```ts
 * const dash = await startDashboard({ port: 0 });
 * console.log(`memory dashboard: ${dash.url}`);
 * // ... train, calling memory.markStep(step, ms, loss) after each step ...
 * await dash.close();
 * ```
 */
export async function startDashboard(opts: DashboardOptions = {}): Promise<Dashboard> {
  const port = opts.port ?? 8090;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ValueError(`dashboard: port must be an integer in 0..65535, got ${port}`);
  const host = opts.host ?? '127.0.0.1';
  const telemetry = new Telemetry(opts);
  const clients = new Set<Client>();

  const timer = setInterval(() => {
    const tick = telemetry.tick();
    if (clients.size === 0) return;
    const msg = sse('tick', tick);
    for (const c of clients) {
      if (c.blocked) continue;
      if (!c.res.write(msg)) {
        c.blocked = true;
        c.res.once('drain', () => (c.blocked = false));
      }
    }
  }, telemetry.sampleMs);
  // Sampling alone must not keep a finished training script alive; the open server decides that.
  timer.unref();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(405, 'method not allowed\n');
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/events') {
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      if (req.method === 'HEAD') return void res.end();
      const client: Client = { res, blocked: false };
      clients.add(client);
      req.on('close', () => clients.delete(client));
      // `retry`: how soon the browser reconnects if the server restarts.
      res.write(`retry: 1000\n\n${sse('history', telemetry.snapshot())}`);
      return;
    }
    if (path === '/history')
      return send(200, JSON.stringify(telemetry.snapshot()), 'application/json; charset=utf-8');
    const entry = FILES[path];
    if (!entry) return send(404, 'not found\n');
    const body = await readFile(entry.file);
    res.writeHead(200, {
      'content-type': entry.type,
      'content-length': String(body.length),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    });
  });
  try {
    await new Promise<void>((ok, fail) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        fail(
          e.code === 'EADDRINUSE'
            ? new TesseraError(`dashboard: port ${port} on ${host} is in use; pick another port`)
            : e,
        ),
      );
      server.listen(port, host, () => ok());
    });
  } catch (e) {
    clearInterval(timer);
    telemetry.close();
    throw e;
  }
  const addr = server.address() as AddressInfo;
  const shown =
    host === '0.0.0.0' || host === '::'
      ? '127.0.0.1'
      : addr.family === 'IPv6'
        ? `[${addr.address}]`
        : addr.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shown}:${addr.port}`,
    close() {
      closing ??= new Promise<void>((ok, fail) => {
        clearInterval(timer);
        telemetry.close();
        for (const c of clients) c.res.end();
        clients.clear();
        server.close((e) => (e ? fail(e) : ok()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
