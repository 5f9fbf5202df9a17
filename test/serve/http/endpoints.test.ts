import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startTestServer, type TestServer } from './fakes.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  // Some traffic for the usage and metrics endpoints.
  for (const stream of [false, true]) await (await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'Hi', max_tokens: 4, stream })).text();
  await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'Hi', max_tokens: 1 }, ADMIN_KEY);
});
afterAll(() => server.close());

describe('GET /v1/models', () => {
  it('lists the served model in the OpenAI list shape', async () => {
    const body = (await (await server.get('/v1/models')).json()) as Json;
    expect(body).toEqual({ object: 'list', data: [{ id: 'tiny-llama', object: 'model', created: expect.any(Number), owned_by: 'tessera' }] });
    expect((await server.get('/v1/models/tiny-llama')).status).toBe(200);
    expect((await server.get('/v1/models/other')).status).toBe(404);
  });
});

describe('GET /v1/usage', () => {
  it("sums the caller's own usage over the range (ISO dates or epoch ms)", async () => {
    const res = await server.get(`/v1/usage?from=2000-01-01&to=${Date.now() + 1000}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body).toMatchObject({ object: 'list', from: '2000-01-01T00:00:00.000Z' });
    expect(body.data).toEqual([{ tenant_id: 'tenant-acme', tenant_name: 'acme', model: 'tiny-llama', requests: 2, prompt_tokens: 6, completion_tokens: 8, cached_tokens: 0, total_tokens: 14, cost: 0 }]);
    expect(server.ledger.summaryQueries.at(-1)).toMatchObject({ tenantId: 'tenant-acme', from: Date.UTC(2000, 0, 1) });
  });

  it('tenant=all is for admins only', async () => {
    const forbidden = await server.get('/v1/usage?from=0&tenant=all');
    expect(forbidden.status).toBe(403);
    expect(((await forbidden.json()) as Json).error).toMatchObject({ type: 'permission_error', param: 'tenant' });
    const res = await server.get('/v1/usage?from=0&tenant=all', ADMIN_KEY);
    expect(res.status).toBe(200);
    expect(((await res.json()) as Json).data.map((r: Json) => r.tenant_id).sort()).toEqual(['tenant-acme', 'tenant-root']);
    expect(server.ledger.summaryQueries.at(-1)!.tenantId).toBeUndefined();
  });

  it.each([
    ['/v1/usage', 'from', /Missing required parameter: 'from'/],
    ['/v1/usage?from=yesterday', 'from', /from must be an ISO 8601 date .* or epoch milliseconds, got 'yesterday'/],
    ['/v1/usage?from=0&to=2024-13-45', 'to', /to must be an ISO 8601 date/],
    ['/v1/usage?from=2025-02-01&to=2025-01-01', 'from', /from must be before to/],
  ])('%s is a 400 naming %s', async (path, param, message) => {
    const res = await server.get(path);
    expect(res.status).toBe(400);
    const e = ((await res.json()) as Json).error;
    expect(e.param).toBe(param);
    expect(e.message).toMatch(message);
  });
});

describe('GET /metrics', () => {
  it('exposes request, token, latency and engine metrics without a key', async () => {
    const res = await server.get('/metrics', null);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    for (const name of [
      'tessera_http_requests_total',
      'tessera_prompt_tokens_total',
      'tessera_completion_tokens_total',
      'tessera_time_to_first_token_seconds_bucket',
      'tessera_inter_token_latency_seconds_bucket',
      'tessera_request_duration_seconds_bucket',
      'tessera_sequences_running',
      'tessera_sequences_waiting',
      'tessera_kv_blocks_used',
      'tessera_kv_blocks_free',
      'tessera_batch_size',
      'tessera_engine_busy_fraction',
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/tessera_http_requests_total\{endpoint="\/v1\/completions",status="200"\} 3/);
    expect(text).toMatch(/tessera_completion_tokens_total\{endpoint="\/v1\/completions"\} 9/);
    expect(text).toMatch(/tessera_engine_busy_fraction 0.25/);
    expect(text).toMatch(/tessera_kv_blocks_free 64/);
  });

  it('histograms engine step durations by kind and counts steps that compiled a shape bucket', async () => {
    server.engine.emitStep({ ms: 12, prefillTokens: 0, decodeTokens: 16, batchSize: 16, compiled: false });
    server.engine.emitStep({ ms: 45, prefillTokens: 16, decodeTokens: 16, batchSize: 17, compiled: false });
    server.engine.emitStep({ ms: 2500, prefillTokens: 48, decodeTokens: 0, batchSize: 1, compiled: true, compiledShape: 'mixed:64x16x1' });
    const text = await (await server.get('/metrics', null)).text();
    expect(text).toMatch(/tessera_engine_step_seconds_bucket\{le="0.02",kind="decode"\} 1/);
    expect(text).toMatch(/tessera_engine_step_seconds_count\{kind="decode"\} 1/);
    expect(text).toMatch(/tessera_engine_step_seconds_bucket\{le="0.05",kind="mixed"\} 1/);
    expect(text).toMatch(/tessera_engine_step_seconds_bucket\{le="1",kind="mixed"\} 1/);
    expect(text).toMatch(/tessera_engine_step_seconds_count\{kind="mixed"\} 2/);
    expect(text).toMatch(/tessera_engine_step_seconds_sum\{kind="mixed"\} 2.545/);
    expect(text).toMatch(/tessera_engine_step_compiles_total\{shape="mixed:64x16x1"\} 1/);
  });
});

describe('GET /health and /ready', () => {
  it('health is always 200, without a key', async () => {
    const res = await server.get('/health', null);
    expect(res.status).toBe(200);
  });

  it('ready follows engine.ready()', async () => {
    expect((await server.get('/ready', null)).status).toBe(200);
    server.engine.isReady = false;
    try {
      expect((await server.get('/ready', null)).status).toBe(503);
      expect((await server.get('/health', null)).status).toBe(200);
      const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 1 });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
    } finally {
      server.engine.isReady = true;
    }
  });
});
