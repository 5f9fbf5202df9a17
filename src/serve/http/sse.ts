/**
 * Server-sent events on a raw Node response, the way OpenAI streams: `data: <json>\n\n` per chunk and
 * `data: [DONE]\n\n` at the end. Each event is one `write`, so with Nagle off it leaves at once.
 */
import type { ServerResponse } from 'node:http';

export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  /** Send the status line and headers (called once, before the first event). */
  open(headers: Readonly<Record<string, string>> = {}): void {
    this.res.socket?.setNoDelay(true);
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Proxies such as nginx would otherwise buffer the stream.
      'x-accel-buffering': 'no',
      ...headers,
    });
    this.res.flushHeaders();
  }

  /** False once the client is gone: writing more would only fail. */
  get writable(): boolean {
    return !this.res.destroyed && !this.res.writableEnded;
  }

  /** One event carrying `payload` as JSON. */
  send(payload: unknown): void {
    if (this.writable) this.res.write(`data: ${JSON.stringify(payload)}\n\n`);
  }

  /** The `[DONE]` sentinel, then end the response. */
  done(): void {
    if (this.writable) this.res.end('data: [DONE]\n\n');
  }

  /** End without `[DONE]` (after an error event): clients then know the stream did not complete. */
  end(): void {
    if (this.writable) this.res.end();
  }
}
