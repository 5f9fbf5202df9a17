import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CHAT_TEMPLATE } from '../../../src/serve/http/chat_template.js';
import { BOS, bytesOf, EOS, IM_END, parseSse, startTestServer, until, type TestServer } from './fakes.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('POST /v1/completions', () => {
  it('answers in the OpenAI shape, with usage equal to the tokens produced and one ledger record', async () => {
    server = await startTestServer();
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'Hi', max_tokens: 5, temperature: 0, seed: 7 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Json;
    expect(body).toMatchObject({ object: 'text_completion', model: 'tiny-llama', choices: [{ index: 0, text: 'Hello', finish_reason: 'length', logprobs: null }] });
    expect(body.id).toMatch(/^cmpl-[0-9a-f]{24}$/);
    expect(typeof body.created).toBe('number');
    expect(body.usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8, prompt_tokens_details: { cached_tokens: 0 } });
    // The engine got the tokenized prompt (BOS + bytes) and the sampling parameters.
    const req = server.engine.runs[0]!.req;
    expect(req.promptTokens).toEqual([BOS, ...bytesOf('Hi')]);
    expect(req.sampling).toEqual({ temperature: 0, topP: 1, seed: 7 });
    expect(req.maxTokens).toBe(5);
    expect(req.stopTokenIds).toContain(EOS);
    expect(server.ledger.records).toHaveLength(1);
    expect(server.ledger.records[0]).toMatchObject({ requestId: body.id, tenantId: 'tenant-acme', keyId: 'key-acme', model: 'tiny-llama', endpoint: '/v1/completions', promptTokens: 3, completionTokens: 5, status: 200, finishReason: 'length' });
  });

  it('accepts a one-element prompt array and a token-id prompt', async () => {
    server = await startTestServer();
    expect((await server.post('/v1/completions', { model: 'tiny-llama', prompt: ['Hi'], max_tokens: 1 })).status).toBe(200);
    expect((await server.post('/v1/completions', { model: 'tiny-llama', prompt: [1, 2, 3], max_tokens: 1 })).status).toBe(200);
    expect(server.engine.runs[0]!.req.promptTokens).toEqual([BOS, 72, 105]);
    expect(server.engine.runs[1]!.req.promptTokens).toEqual([1, 2, 3]);
  });

  it('streams text_completion chunks, a final chunk with finish_reason, a usage chunk, then [DONE]', async () => {
    server = await startTestServer();
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'Hi', max_tokens: 6, stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = parseSse(await res.text()) as Json[];
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1);
    for (const c of chunks) expect(c).toMatchObject({ object: 'text_completion', model: 'tiny-llama' });
    const text = chunks.flatMap((c) => c.choices.map((x: Json) => x.text)).join('');
    expect(text).toBe('Hello,');
    const final = chunks.at(-2)!;
    expect(final.choices).toEqual([{ index: 0, text: '', finish_reason: 'length', logprobs: null }]);
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({ prompt_tokens: 3, completion_tokens: 6, total_tokens: 9, prompt_tokens_details: { cached_tokens: 0 } });
    // Every other chunk carries usage: null, as OpenAI does with include_usage.
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(server.ledger.records).toMatchObject([{ completionTokens: 6, status: 200, finishReason: 'length' }]);
  });

  it('n choices are n engine requests with distinct seeds and summed completion tokens', async () => {
    server = await startTestServer();
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'Hi', max_tokens: 3, n: 3, seed: 10 });
    const body = (await res.json()) as Json;
    expect(body.choices.map((c: Json) => c.index)).toEqual([0, 1, 2]);
    expect(server.engine.runs.map((r) => r.req.sampling.seed)).toEqual([10, 11, 12]);
    expect(new Set(server.engine.runs.map((r) => r.req.id)).size).toBe(3);
    expect(body.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 9 });
    expect(server.ledger.records).toHaveLength(1);
    expect(server.ledger.records[0]!.completionTokens).toBe(9);
  });

  it('an end-of-sequence token ends with finish_reason stop', async () => {
    server = await startTestServer({ engine: { script: () => [...bytesOf('abc'), EOS, ...bytesOf('zzz')] } });
    const body = (await (await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 50 })).json()) as Json;
    expect(body.choices[0]).toMatchObject({ text: 'abc', finish_reason: 'stop' });
    expect(body.usage.completion_tokens).toBe(3);
  });
});

describe('stop strings', () => {
  const script = () => bytesOf('one two STOP three');

  it('cut the text before the stop string, finish the engine request, and bill tokens up to it', async () => {
    server = await startTestServer({ engine: { script, lagTokens: 2 } });
    const body = (await (await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 50, stop: ['nope', 'STOP'] })).json()) as Json;
    expect(body.choices[0]).toMatchObject({ text: 'one two ', finish_reason: 'stop' });
    const run = server.engine.runs[0]!;
    expect(run.finished).toBe(true);
    // 'one two STOP' is 12 byte tokens: the stop string's tokens count, the 2 lagging ones do not.
    expect(body.usage.completion_tokens).toBe(12);
    expect(run.emitted).toBe(14);
    expect(server.ledger.records[0]!.completionTokens).toBe(12);
  });

  it('are never streamed, not even their first characters (a stop string split across tokens)', async () => {
    server = await startTestServer({ engine: { script } });
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 50, stop: 'STOP', stream: true });
    const events = parseSse(await res.text()) as Json[];
    const pieces = events.filter((e) => (e as unknown) !== '[DONE]').flatMap((c) => c.choices.map((x: Json) => x.text));
    expect(pieces.join('')).toBe('one two ');
    expect(pieces.some((p) => /S/.test(p))).toBe(false);
    expect(events.at(-2)).toMatchObject({ choices: [{ finish_reason: 'stop' }] });
  });

  it('a held-back prefix that is not a stop string after all is sent at the end', async () => {
    server = await startTestServer({ engine: { script: () => bytesOf('abcST') } });
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 50, stop: 'STOP', stream: true });
    const events = parseSse(await res.text()) as Json[];
    const text = events.filter((e) => (e as unknown) !== '[DONE]').flatMap((c) => c.choices.map((x: Json) => x.text)).join('');
    expect(text).toBe('abcST');
  });

  it('streamed multi-byte characters split across tokens are never sent half', async () => {
    server = await startTestServer({ engine: { script: () => bytesOf('é€😀!') } });
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 50, stream: true });
    const pieces = (parseSse(await res.text()) as Json[]).filter((e) => (e as unknown) !== '[DONE]').flatMap((c) => c.choices.map((x: Json) => x.text as string));
    expect(pieces.join('')).toBe('é€😀!');
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
  });
});

describe('POST /v1/chat/completions', () => {
  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: [{ type: 'text', text: 'Hi ' }, { type: 'text', text: 'there' }] },
  ];

  it('applies the default ChatML template with a generation prompt, and stops at <|im_end|>', async () => {
    server = await startTestServer({ engine: { script: () => [...bytesOf('Hey!'), IM_END, ...bytesOf('junk')] } });
    const res = await server.post('/v1/chat/completions', { model: 'tiny-llama', messages });
    const body = (await res.json()) as Json;
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(body).toMatchObject({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'Hey!' }, finish_reason: 'stop', logprobs: null }] });
    const prompt = server.tokenizer.decode(server.engine.runs[0]!.req.promptTokens);
    expect(prompt).toBe('<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n');
    // The template's control tokens became their ids, not bytes.
    expect(server.engine.runs[0]!.req.promptTokens.slice(0, 2)).toEqual([BOS, 258]);
    expect(server.engine.runs[0]!.req.stopTokenIds).toEqual(expect.arrayContaining([EOS, IM_END]));
    expect(DEFAULT_CHAT_TEMPLATE).toContain('add_generation_prompt');
  });

  it("uses the model's own template with bos/eos tokens", async () => {
    const chatTemplate = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
    server = await startTestServer({ engine: { model: { chatTemplate } } });
    await server.post('/v1/chat/completions', { model: 'tiny-llama', messages: [{ role: 'user', content: 'yo' }], max_tokens: 2 });
    expect(server.tokenizer.decode(server.engine.runs[0]!.req.promptTokens)).toBe('<s>[user] yo</s>[assistant]');
  });

  it("a template's raise_exception is a 400 naming messages", async () => {
    const chatTemplate = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}x";
    server = await startTestServer({ engine: { model: { chatTemplate } } });
    const res = await server.post('/v1/chat/completions', { model: 'tiny-llama', messages });
    expect(res.status).toBe(400);
    const err = ((await res.json()) as Json).error;
    expect(err.param).toBe('messages');
    expect(err.message).toContain('System role not supported');
  });

  it('streams a role delta, content deltas, a finish chunk, usage and [DONE]', async () => {
    server = await startTestServer();
    const res = await server.post('/v1/chat/completions', { model: 'tiny-llama', messages, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    const events = parseSse(await res.text()) as Json[];
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1);
    for (const c of chunks) expect(c.object).toBe('chat.completion.chunk');
    expect(chunks[0]!.choices[0]).toEqual({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null });
    const content = chunks.slice(1, -2).map((c) => c.choices[0].delta.content).join('');
    expect(content).toBe('Hello');
    expect(chunks.at(-2)!.choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'length', logprobs: null });
    expect(chunks.at(-1)!.usage).toMatchObject({ completion_tokens: 5 });
    expect(server.ledger.records).toMatchObject([{ endpoint: '/v1/chat/completions', completionTokens: 5, status: 200 }]);
  });
});

describe('cancellation and failures', () => {
  /** POST with an abort signal (fetch of the test server's acme key). */
  const abortable = (s: TestServer, path: string, body: unknown, signal: AbortSignal) =>
    fetch(s.url + path, { method: 'POST', signal, headers: { 'content-type': 'application/json', authorization: 'Bearer tsk-acme-secret' }, body: JSON.stringify(body) });

  it('a client that aborts mid-stream cancels the engine request, recorded with status 499', async () => {
    const s = (server = await startTestServer({ engine: { delayMs: 2 } }));
    const ac = new AbortController();
    const res = await abortable(s, '/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 120, stream: true }, ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    await until(() => s.engine.runs[0]!.emitted >= 3);
    ac.abort();
    await until(() => s.ledger.records.length === 1);
    const run = s.engine.runs[0]!;
    expect(run.cancelled).toBe(true);
    expect(run.reason).toBe('cancelled');
    const rec = s.ledger.records[0]!;
    expect(rec).toMatchObject({ status: 499, finishReason: 'cancelled' });
    expect(rec.completionTokens).toBeGreaterThanOrEqual(3);
    expect(rec.completionTokens).toBeLessThan(120);
    expect(s.app.tessera.inFlight()).toBe(0);
    const metrics = await (await s.get('/metrics', null)).text();
    expect(metrics).toMatch(/tessera_http_requests_total\{endpoint="\/v1\/completions",status="499"\} 1/);
  });

  it('a client that goes away during a non-streamed request cancels it too', async () => {
    const s = (server = await startTestServer({ engine: { delayMs: 2 } }));
    const ac = new AbortController();
    const r = abortable(s, '/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 120 }, ac.signal).catch((e: Error) => e);
    await until(() => s.engine.runs.length === 1 && s.engine.runs[0]!.emitted >= 2);
    ac.abort();
    expect(await r).toBeInstanceOf(Error);
    await until(() => s.ledger.records.length === 1);
    expect(s.engine.runs[0]!.cancelled).toBe(true);
    expect(s.ledger.records[0]).toMatchObject({ status: 499, finishReason: 'cancelled' });
  });

  it('an engine error is a 500 with an OpenAI error object, recorded once', async () => {
    server = await startTestServer();
    server.engine.failAfter = { tokens: 2, error: 'device lost' };
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 10 });
    expect(res.status).toBe(500);
    expect(((await res.json()) as Json).error).toMatchObject({ type: 'server_error', message: expect.stringContaining('device lost') });
    expect(server.ledger.records).toMatchObject([{ status: 500, finishReason: 'error', completionTokens: 2 }]);
  });

  it('an engine error mid-stream sends an error event and no [DONE]', async () => {
    server = await startTestServer();
    server.engine.failAfter = { tokens: 2, error: 'device lost' };
    const res = await server.post('/v1/chat/completions', { model: 'tiny-llama', messages: [{ role: 'user', content: 'x' }], max_tokens: 10, stream: true });
    const events = parseSse(await res.text()) as Json[];
    expect(events).not.toContain('[DONE]');
    expect(events.at(-1)).toMatchObject({ error: { type: 'server_error' } });
    expect(server.ledger.records).toMatchObject([{ status: 500, finishReason: 'error' }]);
  });

  it('when the ledger cannot record, the client gets a 500, not an unbilled completion', async () => {
    server = await startTestServer();
    server.ledger.failWith = new Error('disk full');
    const res = await server.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 3 });
    expect(res.status).toBe(500);
    expect(((await res.json()) as Json).error.message).toMatch(/usage could not be recorded/);
  });

  it('cancelInFlight (shutdown) ends streams with an error and records 503', async () => {
    server = await startTestServer({ engine: { delayMs: 5 } });
    const s = server;
    const res = await s.post('/v1/completions', { model: 'tiny-llama', prompt: 'x', max_tokens: 100, stream: true });
    await until(() => s.app.tessera.inFlight() === 1 && s.engine.runs[0]!.emitted > 1);
    s.app.tessera.cancelInFlight();
    const events = parseSse(await res.text()) as Json[];
    expect(events.at(-1)).toMatchObject({ error: { code: 'shutting_down' } });
    expect(s.ledger.records).toMatchObject([{ status: 503, finishReason: 'cancelled' }]);
    expect(s.app.tessera.inFlight()).toBe(0);
  });
});
