/**
 * POST /v1/completions and POST /v1/chat/completions: request → prompt tokens → engine → OpenAI-shaped
 * response (one JSON body, or a server-sent event stream).
 *
 * Accounting rules (what `usage` says and what the ledger records are the same numbers):
 * - `prompt_tokens`: the prompt's length, counted once even when `n` > 1 (as OpenAI counts it).
 * - `completion_tokens`: per choice, the tokens generated up to and including the token that completed a
 *   stop string (the stop string's text is not sent, but its tokens were computed), summed over choices.
 *   Tokens the engine produced after it was told to finish or cancel are neither sent nor counted.
 * - Exactly one usage record per request the engine accepted, written before the last bytes the client
 *   receives (the JSON body, or the stream's `[DONE]`), so every response a client saw complete is
 *   recorded. Status 200 for a complete response, 499 when the client went away (the engine is then
 *   told to cancel), 500 when the engine failed, 503 when the server shut down mid-request.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EngineOverloadedError, EngineRequestError, type FinishReason, type UsageRecord } from '../types.js';
import { ChatTemplateError, END_OF_TURN_TOKENS, renderChatPrompt } from './chat_template.js';
import type { InFlight, ServeContext } from './context.js';
import { ValueError } from '../../errors.js';
import { ApiError, invalidRequest, modelNotFound, overloaded, rateLimited, serverError } from './errors.js';
import { Generation, type GenerationOutcome } from './generation.js';
import { chatBodySchema, completionBodySchema, type ChatBody, type ChatMessage, type CompletionBody } from './schemas.js';
import { SseWriter } from './sse.js';

type Endpoint = UsageRecord['endpoint'];

/** A validated request, reduced to what the engine and the response need. */
interface Prepared {
  promptTokens: number[];
  /** The request field the prompt came from ('prompt' or 'messages'), for error messages. */
  promptParam: 'prompt' | 'messages';
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stops: string[];
  stopTokenIds: number[];
  n: number;
  stream: boolean;
  includeUsage: boolean;
}

/** Fields both endpoints share. */
type CommonBody = CompletionBody | ChatBody;

/** The OpenAI finish_reason of an outcome ('cancelled'/'error' only appear on responses that are not sent). */
const openAiFinish = (r: FinishReason): 'stop' | 'length' => (r === 'length' ? 'length' : 'stop');

function checkUnsupported(body: CommonBody): void {
  for (const f of ['frequency_penalty', 'presence_penalty'] as const) {
    const v = body[f];
    if (v !== undefined && v !== null && v !== 0) throw invalidRequest(`${f} is not supported by this server (only 0).`, f);
  }
}

/** Message content as one string: text parts are concatenated. */
function messageText(m: ChatMessage): string {
  return typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('');
}

function promptTokensOf(ctx: ServeContext, body: CompletionBody): number[] {
  const p = body.prompt;
  if (typeof p === 'string' || typeof p[0] === 'string') {
    const text = typeof p === 'string' ? p : (p[0] as string);
    const ids = encodeOrReject(() => ctx.tokenizer.encode(text), 'prompt');
    if (ids.length === 0) throw invalidRequest('prompt must not be empty.', 'prompt');
    return ids;
  }
  const ids = p as number[];
  const vocab = ctx.engine.model.vocabSize;
  const bad = ids.findIndex((t) => t >= vocab);
  if (bad >= 0) throw invalidRequest(`prompt[${bad}] is ${ids[bad]}, not a token id of this model (vocabulary of ${vocab}).`, `prompt[${bad}]`);
  return ids.slice();
}

function chatPromptTokens(ctx: ServeContext, body: ChatBody): number[] {
  let text: string;
  try {
    text = renderChatPrompt(
      ctx.engine.model,
      body.messages.map((m) => ({ role: m.role, content: messageText(m), ...(m.name ? { name: m.name } : {}) })),
    );
  } catch (e) {
    if (e instanceof ChatTemplateError) throw invalidRequest(`messages could not be formatted with the model's chat template: ${e.message}`, 'messages');
    throw e;
  }
  // The template writes the control tokens (BOS, <|im_start|>) as text: parse them back into their ids,
  // and add no BOS of our own (the template has it where the model wants it), as Hugging Face does.
  return encodeOrReject(() => ctx.tokenizer.encode(text, { addSpecial: false, parseSpecial: true }), 'messages');
}

/**
 * Tokenize client text; a tokenizer that cannot encode it (a character outside a vocabulary with no
 * byte fallback, e.g. a character-level model) is the client's input problem: 400 naming the field.
 */
function encodeOrReject(encode: () => number[], field: string): number[] {
  try {
    return encode();
  } catch (e) {
    if (e instanceof ValueError) throw invalidRequest(`${field} cannot be tokenized by this model: ${e.message}`, field);
    throw e;
  }
}

/** End-of-sequence ids, plus the end-of-turn tokens of chat templates for chat requests. */
function stopTokenIds(ctx: ServeContext, chat: boolean): number[] {
  const ids = new Set<number>(ctx.engine.model.eosTokenIds);
  if (ctx.tokenizer.eosId !== undefined) ids.add(ctx.tokenizer.eosId);
  if (chat) {
    for (const t of END_OF_TURN_TOKENS) {
      const id = ctx.tokenizer.specialTokens.get(t);
      if (id !== undefined) ids.add(id);
    }
  }
  return [...ids];
}

function prepare(ctx: ServeContext, endpoint: Endpoint, body: CommonBody): Prepared {
  const model = ctx.engine.model;
  if (body.model !== model.id) throw modelNotFound(body.model, model.id);
  checkUnsupported(body);
  const chat = endpoint === '/v1/chat/completions';
  let promptTokens: number[];
  let requestedMax: number | null | undefined;
  if (chat) {
    const b = body as ChatBody;
    if (b.logprobs) throw invalidRequest('logprobs is not supported by this server.', 'logprobs');
    promptTokens = chatPromptTokens(ctx, b);
    requestedMax = b.max_completion_tokens ?? b.max_tokens;
  } else {
    const b = body as CompletionBody;
    if (b.echo) throw invalidRequest('echo is not supported by this server.', 'echo');
    if (b.logprobs) throw invalidRequest('logprobs is not supported by this server.', 'logprobs');
    if (b.suffix) throw invalidRequest('suffix is not supported by this server.', 'suffix');
    if (b.best_of != null && b.best_of !== (b.n ?? 1)) throw invalidRequest('best_of is not supported by this server (it may only equal n).', 'best_of');
    promptTokens = promptTokensOf(ctx, b);
    requestedMax = b.max_tokens;
  }
  const promptParam = chat ? 'messages' : 'prompt';
  const P = promptTokens.length;
  if (P > ctx.limits.maxPromptTokens) {
    throw invalidRequest(`The ${chat ? 'messages are' : 'prompt is'} ${P} tokens long, over this server's limit of ${ctx.limits.maxPromptTokens} prompt tokens.`, promptParam, 'context_length_exceeded');
  }
  const ctxLen = model.contextLength;
  let maxTokens: number;
  if (requestedMax != null) {
    if (P + requestedMax > ctxLen) {
      throw invalidRequest(
        `This model's maximum context length is ${ctxLen} tokens. However, you requested ${P + requestedMax} tokens (${P} in the ${promptParam}, ${requestedMax} in the completion). Please reduce the length of the ${promptParam} or the completion.`,
        promptParam,
        'context_length_exceeded',
      );
    }
    maxTokens = requestedMax;
  } else {
    if (P >= ctxLen) {
      throw invalidRequest(`This model's maximum context length is ${ctxLen} tokens, and the ${promptParam} alone is ${P} tokens: no room for a completion.`, promptParam, 'context_length_exceeded');
    }
    maxTokens = Math.min(ctx.limits.maxTokensDefault, ctxLen - P);
  }
  const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const topP = body.top_p ?? 1;
  return {
    promptTokens,
    promptParam,
    maxTokens,
    // top_p 0 keeps only the most likely token: greedy.
    temperature: topP === 0 ? 0 : (body.temperature ?? 1),
    topP: topP === 0 ? 1 : topP,
    seed: body.seed ?? randomInt(0, 2 ** 31),
    stops: stop.filter((s) => s.length > 0),
    stopTokenIds: stopTokenIds(ctx, chat),
    n: body.n ?? 1,
    stream: body.stream ?? false,
    includeUsage: body.stream_options?.include_usage ?? false,
  };
}

function usageOf(o: GenerationOutcome) {
  return {
    prompt_tokens: o.promptTokens,
    completion_tokens: o.completionTokens,
    total_tokens: o.promptTokens + o.completionTokens,
    prompt_tokens_details: { cached_tokens: o.cachedTokens },
  };
}

/** Everything about one request that the response and the record need. */
class Exchange {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  readonly startedAt = Date.now();
  readonly arrivedAt = performance.now();
  clientGone = false;
  shuttingDown = false;
  /** The rate limiter's reservation for this request, released by {@link commitTokens}. */
  ticket: number | undefined;

  constructor(
    readonly ctx: ServeContext,
    readonly endpoint: Endpoint,
    readonly request: FastifyRequest,
  ) {
    this.id = `${endpoint === '/v1/chat/completions' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
  }

  get chat(): boolean {
    return this.endpoint === '/v1/chat/completions';
  }

  /** The status a finished generation is recorded with (see the file comment). */
  statusOf(o: GenerationOutcome): { status: number; finishReason: FinishReason } {
    if (this.clientGone) return { status: 499, finishReason: 'cancelled' };
    if (this.shuttingDown) return { status: 503, finishReason: 'cancelled' };
    if (o.finishReason === 'error') return { status: 500, finishReason: 'error' };
    return { status: 200, finishReason: o.finishReason };
  }

  /** Charge the tenant's rate-limit window with what the request really used. */
  commitTokens(tokens: number): void {
    this.ctx.rateLimiter?.commit(this.request.principal!.tenant.id, tokens, this.ticket);
  }

  /** Write the usage record, charge the rate limiter, update metrics and log. Rejects if the ledger fails. */
  async record(o: GenerationOutcome, status: number, finishReason: FinishReason): Promise<void> {
    const { ctx, request } = this;
    const principal = request.principal!;
    const durationMs = performance.now() - this.arrivedAt;
    if (status === 499) ctx.metrics.countRequest(request, this.endpoint, status);
    const rec: UsageRecord = {
      requestId: this.id,
      tenantId: principal.tenant.id,
      keyId: principal.keyId,
      model: ctx.engine.model.id,
      endpoint: this.endpoint,
      promptTokens: o.promptTokens,
      completionTokens: o.completionTokens,
      cachedTokens: o.cachedTokens,
      status,
      finishReason,
      startedAt: this.startedAt,
      durationMs,
      ...(o.timeToFirstTokenMs !== undefined ? { timeToFirstTokenMs: o.timeToFirstTokenMs } : {}),
    };
    try {
      // First: if the ledger fails, nothing below claims the request was served.
      await ctx.ledger.record(rec);
    } finally {
      // The rate limiter's reservation is released either way.
      this.commitTokens(o.promptTokens + o.completionTokens);
    }
    request.recordedStatus = status;
    const labels = { endpoint: this.endpoint };
    ctx.metrics.promptTokens.inc(labels, o.promptTokens);
    ctx.metrics.completionTokens.inc(labels, o.completionTokens);
    ctx.metrics.requestDuration.observe(labels, durationMs / 1000);
    if (o.timeToFirstTokenMs !== undefined) ctx.metrics.timeToFirstToken.observe(labels, o.timeToFirstTokenMs / 1000);
    request.log.info(
      { completionId: this.id, tenant: principal.tenant.id, promptTokens: o.promptTokens, completionTokens: o.completionTokens, cachedTokens: o.cachedTokens, ttftMs: o.timeToFirstTokenMs, durationMs: Math.round(durationMs), status, finishReason, error: o.error },
      'completion finished',
    );
  }
}

/** Submit, mapping the engine's refusals to HTTP errors. */
function startGeneration(gen: Generation, p: Prepared): void {
  try {
    gen.start();
  } catch (e) {
    if (e instanceof EngineOverloadedError) throw overloaded(e.message, e.retryAfterSeconds);
    if (e instanceof EngineRequestError) throw invalidRequest(e.message, e.field === 'prompt' || e.field === 'messages' ? p.promptParam : e.field);
    throw e;
  }
}

async function handle(ctx: ServeContext, endpoint: Endpoint, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const body = request.body as CommonBody;
  const p = prepare(ctx, endpoint, body);
  if (!ctx.engine.ready()) throw new ApiError(503, 'The model is still loading.', 'server_error', null, 'model_not_ready', { 'retry-after': '5' });
  const ex = new Exchange(ctx, endpoint, request);
  if (ctx.rateLimiter) {
    const verdict = ctx.rateLimiter.check(request.principal!.tenant, p.promptTokens.length + p.maxTokens * p.n);
    if (!verdict.ok) throw rateLimited(verdict.limit, verdict.retryAfterSeconds);
    ex.ticket = verdict.ticket;
  }
  /** Text produced before the stream is open (an engine may emit inside `submit`) waits here. */
  const early: Array<[number, string]> = [];
  let sse: SseWriter | undefined;
  const chunk = (choices: unknown[], usage?: unknown) => ({
    id: ex.id,
    object: ex.chat ? 'chat.completion.chunk' : 'text_completion',
    created: ex.created,
    model: ctx.engine.model.id,
    choices,
    ...(p.includeUsage ? { usage: usage ?? null } : {}),
  });
  const textChunk = (index: number, text: string) => chunk([ex.chat ? { index, delta: { content: text }, finish_reason: null, logprobs: null } : { index, text, finish_reason: null, logprobs: null }]);
  const gen = new Generation(
    ctx.engine,
    ctx.tokenizer,
    { id: ex.id, promptTokens: p.promptTokens, maxTokens: p.maxTokens, sampling: { temperature: p.temperature, topP: p.topP, seed: p.seed }, stopTokenIds: p.stopTokenIds, stops: p.stops, n: p.n, arrivedAt: ex.arrivedAt },
    {
      onText: (i, text) => {
        if (!p.stream) return;
        if (sse) sse.send(textChunk(i, text));
        else early.push([i, text]);
      },
      onToken: (_i, gap) => {
        if (gap !== undefined) ctx.metrics.interTokenLatency.observe({ endpoint }, gap / 1000);
      },
    },
  );
  const entry: InFlight = {
    generation: gen,
    shutdown: () => {
      ex.shuttingDown = true;
      gen.cancel();
    },
  };
  // The response's 'close' before it finished writing means the client went away.
  const onClose = () => {
    if (!reply.raw.writableFinished) {
      ex.clientGone = true;
      gen.cancel();
    }
  };
  reply.raw.on('close', onClose);
  try {
    startGeneration(gen, p);
  } catch (e) {
    // Choices the engine had accepted before refusing one were cancelled; record what they used.
    if (gen.submittedCount > 0) {
      const o = await gen.done;
      await ex.record(o, e instanceof ApiError ? e.status : 500, 'cancelled');
    } else ex.commitTokens(0);
    throw e;
  }
  ctx.inFlight.add(entry);
  try {
    return p.stream ? await streamResponse() : await jsonResponse();
  } finally {
    ctx.inFlight.delete(entry);
  }

  async function jsonResponse(): Promise<unknown> {
    const o = await gen.done;
    const { status, finishReason } = ex.statusOf(o);
    try {
      await ex.record(o, status, finishReason);
    } catch (e) {
      request.log.error({ err: e, completionId: ex.id }, 'usage record failed');
      throw serverError('The completion finished but its usage could not be recorded; it is not billed.');
    }
    if (status === 499) {
      // Nobody to answer; tell Fastify the response is handled.
      reply.hijack();
      return undefined;
    }
    if (status === 503) throw new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down', { 'retry-after': '5' });
    if (status === 500) throw serverError(`Generation failed: ${o.error ?? 'engine error'}`);
    reply.header('x-request-id', request.id);
    return {
      id: ex.id,
      object: ex.chat ? 'chat.completion' : 'text_completion',
      created: ex.created,
      model: ctx.engine.model.id,
      choices: o.choices.map((c) =>
        ex.chat
          ? { index: c.index, message: { role: 'assistant', content: c.text }, finish_reason: openAiFinish(c.finishReason), logprobs: null }
          : { index: c.index, text: c.text, finish_reason: openAiFinish(c.finishReason), logprobs: null },
      ),
      usage: usageOf(o),
    };
  }

  async function streamResponse(): Promise<undefined> {
    reply.hijack();
    const writer = new SseWriter(reply.raw);
    writer.open({ 'x-request-id': request.id });
    if (ex.chat) for (let i = 0; i < p.n; i++) writer.send(chunk([{ index: i, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null }]));
    sse = writer;
    for (const [i, text] of early.splice(0)) writer.send(textChunk(i, text));
    const o = await gen.done;
    let { status, finishReason } = ex.statusOf(o);
    let failure: ApiError | undefined;
    try {
      await ex.record(o, status, finishReason);
    } catch (e) {
      request.log.error({ err: e, completionId: ex.id }, 'usage record failed');
      failure = serverError('The completion finished but its usage could not be recorded; it is not billed.');
      status = 500;
      finishReason = 'error';
    }
    if (status === 200) {
      for (const c of o.choices) writer.send(chunk([ex.chat ? { index: c.index, delta: {}, finish_reason: openAiFinish(c.finishReason), logprobs: null } : { index: c.index, text: '', finish_reason: openAiFinish(c.finishReason), logprobs: null }]));
      if (p.includeUsage) writer.send(chunk([], usageOf(o)));
      writer.done();
      return undefined;
    }
    if (status !== 499) {
      failure ??= status === 503 ? new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down') : serverError(`Generation failed: ${o.error ?? 'engine error'}`);
      writer.send(failure.body());
    }
    writer.end();
    return undefined;
  }
}

/** Register both completion endpoints on `app` (behind the auth hook that app.ts installs on /v1). */
export function registerCompletionRoutes(app: FastifyInstance, ctx: ServeContext): void {
  app.post('/v1/completions', { schema: { body: completionBodySchema(ctx.limits) } }, (req, reply) => handle(ctx, '/v1/completions', req, reply));
  app.post('/v1/chat/completions', { schema: { body: chatBodySchema(ctx.limits) } }, (req, reply) => handle(ctx, '/v1/chat/completions', req, reply));
}
