import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../src/serve/ledger/rate_limit.js';
import { EngineOverloadedError, EngineRequestError } from '../../../src/serve/types.js';
import { SLOW_KEY, startTestServer, type TestServer } from './fakes.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ app: { rateLimiter: new RateLimiter() } });
});
afterAll(() => server.close());

const chat = (over: Json) => ({ model: 'tiny-llama', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...over });
const comp = (over: Json) => ({ model: 'tiny-llama', prompt: 'hi', max_tokens: 2, ...over });

async function error(res: Response): Promise<Json> {
  const body = (await res.json()) as Json;
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  return body.error;
}

describe('400 for each malformed field, naming it', () => {
  const cases: Array<[string, '/v1/completions' | '/v1/chat/completions', Json, string | null, RegExp]> = [
    ['temperature too high', '/v1/chat/completions', chat({ temperature: 3 }), 'temperature', /temperature must be between 0 and 2/],
    ['temperature not a number', '/v1/chat/completions', chat({ temperature: 'hot' }), 'temperature', /temperature must be a number/],
    ['negative top_p', '/v1/completions', comp({ top_p: -0.1 }), 'top_p', /top_p must be between 0 and 1/],
    ['max_tokens zero', '/v1/completions', comp({ max_tokens: 0 }), 'max_tokens', /max_tokens must be at least 1/],
    ['max_tokens fractional', '/v1/completions', comp({ max_tokens: 1.5 }), 'max_tokens', /max_tokens must be an integer/],
    ['n too large', '/v1/completions', comp({ n: 9 }), 'n', /n must be between 1 and 8/],
    ['seed not an integer', '/v1/chat/completions', chat({ seed: 'x' }), 'seed', /seed must be an integer/],
    ['five stop strings', '/v1/completions', comp({ stop: ['a', 'b', 'c', 'd', 'e'] }), 'stop', /stop must be a string or an array of at most 4 strings/],
    ['stop a number', '/v1/completions', comp({ stop: 5 }), 'stop', /stop must be a string or an array/],
    ['stream not a boolean', '/v1/completions', comp({ stream: 'yes' }), 'stream', /stream must be a boolean/],
    ['include_usage not a boolean', '/v1/completions', comp({ stream_options: { include_usage: 1 } }), 'stream_options.include_usage', /stream_options.include_usage must be a boolean/],
    ['missing model', '/v1/completions', { prompt: 'x' }, 'model', /Missing required parameter: 'model'/],
    ['missing prompt', '/v1/completions', { model: 'tiny-llama' }, 'prompt', /Missing required parameter: 'prompt'/],
    ['two prompts', '/v1/completions', comp({ prompt: ['a', 'b'] }), 'prompt', /prompt must be a string, an array holding one string, or a non-empty array of token ids/],
    ['token id out of the vocabulary', '/v1/completions', comp({ prompt: [1, 999] }), 'prompt[1]', /prompt\[1\] is 999, not a token id of this model/],
    ['echo', '/v1/completions', comp({ echo: true }), 'echo', /echo is not supported/],
    ['logprobs', '/v1/completions', comp({ logprobs: 2 }), 'logprobs', /logprobs is not supported/],
    ['penalty', '/v1/chat/completions', chat({ presence_penalty: 1 }), 'presence_penalty', /presence_penalty is not supported/],
    ['missing messages', '/v1/chat/completions', { model: 'tiny-llama' }, 'messages', /Missing required parameter: 'messages'/],
    ['empty messages', '/v1/chat/completions', chat({ messages: [] }), 'messages', /messages must have at least 1 element/],
    ['bad role', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 'a' }, { role: 'robot', content: 'b' }] }), 'messages[1].role', /messages\[1\].role must be one of system, user, assistant/],
    ['missing content', '/v1/chat/completions', chat({ messages: [{ role: 'user' }] }), 'messages[0].content', /Missing required parameter: 'messages\[0\].content'/],
    ['content a number', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 42 }] }), 'messages[0].content', /messages\[0\].content must be a string or an array of text parts/],
    ['image content part', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'x' }] }] }), 'messages[0].content', /array of text parts/],
    ['body not an object', '/v1/chat/completions', [1, 2], null, /request body must be an object/],
  ];
  it.each(cases)('%s', async (_name, path, body, param, message) => {
    const res = await server.post(path, body);
    expect(res.status).toBe(400);
    const e = await error(res);
    expect(e.type).toBe('invalid_request_error');
    expect(e.param).toBe(param);
    expect(e.message).toMatch(message);
  });

  it('null means unset for optional fields (as clients send it)', async () => {
    const res = await server.post('/v1/chat/completions', chat({ temperature: null, stop: null, n: null, seed: null, stream: null, max_tokens: null }));
    expect(res.status).toBe(200);
  });
});

describe('other client errors', () => {
  it('broken JSON is a 400 saying so', async () => {
    const res = await server.post('/v1/chat/completions', '{"model": "tiny-llama", "messages": [');
    expect(res.status).toBe(400);
    const e = await error(res);
    expect(e).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
    expect(e.message).toMatch(/could not parse the JSON body/);
  });

  it('an empty body is a 400', async () => {
    const res = await server.post('/v1/completions', '');
    expect(res.status).toBe(400);
    expect((await error(res)).message).toMatch(/body is empty/);
  });

  it('a prompt over the context names the limit and both token counts', async () => {
    // Context 128: 3 prompt tokens + 200 requested.
    const res = await server.post('/v1/completions', comp({ max_tokens: 200 }));
    expect(res.status).toBe(400);
    const e = await error(res);
    expect(e).toMatchObject({ param: 'prompt', code: 'context_length_exceeded' });
    expect(e.message).toMatch(/maximum context length is 128 tokens.*203 tokens \(3 in the prompt, 200 in the completion\)/);
  });

  it('a prompt that alone fills the context is a 400 even without max_tokens', async () => {
    const res = await server.post('/v1/chat/completions', { model: 'tiny-llama', messages: [{ role: 'user', content: 'x'.repeat(200) }] });
    expect(res.status).toBe(400);
    expect(await error(res)).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
  });

  it('an unknown model is a 404 model_not_found', async () => {
    const res = await server.post('/v1/completions', comp({ model: 'gpt-4' }));
    expect(res.status).toBe(404);
    expect(await error(res)).toMatchObject({ code: 'model_not_found', param: 'model', type: 'invalid_request_error' });
  });

  it('an unknown route is a 404 error object', async () => {
    const res = await server.get('/v1/nothing');
    expect(res.status).toBe(404);
    expect((await error(res)).type).toBe('not_found_error');
  });
});

describe('auth, rate limits, overload', () => {
  it('a missing key is a 401', async () => {
    const res = await server.post('/v1/completions', comp({}), null);
    expect(res.status).toBe(401);
    expect(await error(res)).toMatchObject({ type: 'authentication_error', code: 'missing_api_key' });
  });

  it('an unknown key is a 401, also on GET routes', async () => {
    for (const res of [await server.post('/v1/completions', comp({}), 'tsk-wrong'), await server.get('/v1/models', 'tsk-wrong')]) {
      expect(res.status).toBe(401);
      expect(await error(res)).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    }
  });

  it('a tenant over its requests per minute gets 429 with Retry-After, naming the limit', async () => {
    expect((await server.post('/v1/completions', comp({}), SLOW_KEY)).status).toBe(200);
    const res = await server.post('/v1/completions', comp({}), SLOW_KEY);
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const e = await error(res);
    expect(e).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(e.message).toMatch(/requests_per_minute/);
  });

  it('EngineOverloadedError is a 503 with Retry-After; nothing is recorded', async () => {
    const before = server.ledger.records.length;
    server.engine.refuse = new EngineOverloadedError('waiting queue full (256)', 3);
    try {
      const res = await server.post('/v1/completions', comp({}));
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('3');
      expect(await error(res)).toMatchObject({ type: 'server_error', code: 'engine_overloaded' });
    } finally {
      server.engine.refuse = undefined;
    }
    expect(server.ledger.records.length).toBe(before);
  });

  it('a refusal after some of n choices were accepted cancels them and records once', async () => {
    const before = server.ledger.records.length;
    const runs = server.engine.runs.length;
    server.engine.refuse = new EngineOverloadedError('full', 1);
    server.engine.refuseAfter = runs + 2;
    try {
      const res = await server.post('/v1/completions', comp({ n: 3 }));
      expect(res.status).toBe(503);
    } finally {
      server.engine.refuse = undefined;
      server.engine.refuseAfter = 0;
    }
    expect(server.engine.runs.slice(runs).map((r) => r.cancelled)).toEqual([true, true]);
    expect(server.ledger.records.slice(before)).toMatchObject([{ status: 503, finishReason: 'cancelled' }]);
  });

  it('EngineRequestError is a 400 naming its field', async () => {
    server.engine.refuse = new EngineRequestError('prompt + max_tokens need 40 KV blocks, the pool has 32', 'prompt');
    try {
      const res = await server.post('/v1/completions', comp({}));
      expect(res.status).toBe(400);
      expect(await error(res)).toMatchObject({ param: 'prompt', message: expect.stringContaining('KV blocks') });
    } finally {
      server.engine.refuse = undefined;
    }
  });
});
