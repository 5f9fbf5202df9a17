import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME_KEY, startTestServer, type TestServer } from './fakes.js';

let server: TestServer;
let client: OpenAI;
beforeAll(async () => {
  server = await startTestServer();
  client = new OpenAI({ baseURL: server.url + '/v1', apiKey: ACME_KEY, maxRetries: 0 });
});
afterAll(() => server.close());

describe('the official openai client', () => {
  it('chat.completions.create without streaming', async () => {
    const r = await client.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: 'Hello' });
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage).toMatchObject({ completion_tokens: 5, total_tokens: r.usage!.prompt_tokens + 5 });
  });

  it('chat.completions.create with stream and include_usage', async () => {
    const stream = await client.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 7, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('Hello, ');
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(7);
  });

  it('completions.create and models.list', async () => {
    const r = await client.completions.create({ model: 'tiny-llama', prompt: 'Hi', max_tokens: 3, stop: ['l'] });
    expect(r.choices[0]).toMatchObject({ text: 'He', finish_reason: 'stop' });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny-llama']);
  });

  it('errors surface as the client exception classes', async () => {
    await expect(client.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'Hi' }], temperature: 5 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const bad = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'nope', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });
});
