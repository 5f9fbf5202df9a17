/**
 * The OpenAI-compatible HTTP API of `tessera serve`, as a Fastify instance: completions and chat
 * completions (completions.ts), models, usage, metrics, health and readiness; API-key auth on /v1; every
 * error as an OpenAI error object.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Registry } from 'prom-client';
import type { Tokenizer } from '../../tokenizer/types.js';
import type { Engine, Ledger } from '../types.js';
import { registerCompletionRoutes } from './completions.js';
import { resolveLimits, type InFlight, type RateLimiter, type ServeContext, type ServeLimits } from './context.js';
import { ApiError, authenticationError, fromValidation, invalidRequest, type ValidationIssue } from './errors.js';
import { ServeMetrics } from './metrics.js';
import { registerUsageRoute } from './usage.js';

/** Options of {@link buildApp}. */
export interface BuildAppOptions {
  engine: Engine;
  ledger: Ledger;
  /** The served model's tokenizer: prompts are tokenized and completions detokenized here, not in the engine. */
  tokenizer: Tokenizer;
  /** Per-tenant request and token limits; none means unlimited. */
  rateLimiter?: RateLimiter;
  /** pino options for Fastify's logger, or false for none (the default). */
  logger?: FastifyServerOptions['logger'];
  limits?: ServeLimits;
  /** Registry to put the metrics on (default: a fresh one, served at /metrics). */
  metrics?: Registry;
  /** Largest request body in bytes (default 16 MiB: long prompts as token arrays are large). */
  bodyLimit?: number;
}

/** What {@link buildApp} adds to the Fastify instance, for the server's shutdown path. */
export interface TesseraAppState {
  /** Requests being generated now. */
  inFlight(): number;
  /** Cancel every request in flight (each is recorded with status 503 and answered with an error). */
  cancelInFlight(): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    tessera: TesseraAppState;
  }
}

/** Paths that need no API key. */
const PUBLIC_PATHS = new Set(['/health', '/ready', '/metrics']);

/** Build the app (not listening yet: call `app.listen`). */
export function buildApp(opts: BuildAppOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 16 * 1024 * 1024,
    // verbose: errors carry their schema, so messages can say "between 0 and 2"; no coercion: a string
    // where a number belongs is a client error, not something to guess at.
    ajv: { customOptions: { verbose: true, coerceTypes: false, allErrors: false } },
    requestIdHeader: 'x-request-id',
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, parseJsonBody);
  const inFlight = new Set<InFlight>();
  const ctx: ServeContext = {
    engine: opts.engine,
    ledger: opts.ledger,
    tokenizer: opts.tokenizer,
    ...(opts.rateLimiter ? { rateLimiter: opts.rateLimiter } : {}),
    limits: resolveLimits(opts.limits ?? {}, opts.engine.model.contextLength),
    metrics: new ServeMetrics(opts.engine, opts.metrics),
    inFlight,
  };
  app.decorate('tessera', {
    inFlight: () => inFlight.size,
    cancelInFlight: () => {
      for (const f of [...inFlight]) f.shutdown();
    },
  } satisfies TesseraAppState);
  app.decorateRequest('principal', null);
  app.decorateRequest('recordedStatus', null);

  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?', 1)[0]!;
    if (PUBLIC_PATHS.has(path)) return;
    const header = request.headers.authorization;
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) throw authenticationError(true);
    const principal = opts.ledger.authenticate(m[1]!);
    if (!principal) throw authenticationError(false);
    request.principal = principal;
  });

  app.addHook('onResponse', async (request, reply) => {
    ctx.metrics.countRequest(request, request.routeOptions.url ?? 'unmatched', request.recordedStatus ?? reply.statusCode);
  });

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    const api = toApiError(error);
    if (api.status >= 500) request.log.error({ err: error }, 'request failed');
    void reply.code(api.status).headers(api.headers).send(api.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new ApiError(404, `Unknown route ${request.method} ${request.url.split('?', 1)[0]}.`, 'not_found_error', null, 'unknown_route');
    void reply.code(404).send(e.body());
  });

  registerCompletionRoutes(app, ctx);
  registerUsageRoute(app, ctx);

  const model = () => ({ id: opts.engine.model.id, object: 'model' as const, created: startedAt, owned_by: 'tessera' });
  const startedAt = Math.floor(Date.now() / 1000);
  app.get('/v1/models', async () => ({ object: 'list', data: [model()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== opts.engine.model.id) throw new ApiError(404, `The model '${request.params.id}' does not exist.`, 'invalid_request_error', 'model', 'model_not_found');
    return model();
  });
  app.get('/metrics', async (_request, reply) => {
    const registry = ctx.metrics.registry;
    return reply.header('content-type', registry.contentType).send(await registry.metrics());
  });
  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/ready', async (_request, reply) => {
    const ready = opts.engine.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'loading' });
  });
  return app;
}

/** Any error → the OpenAI error object the client gets. */
function toApiError(error: FastifyError | ApiError): ApiError {
  if (error instanceof ApiError) return error;
  const fe = error as FastifyError & { validation?: ValidationIssue[]; validationContext?: string };
  if (fe.validation) return fromValidation(fe.validation, fe.validationContext ?? 'body');
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, `The request body is larger than this server's limit of ${fe.message.match(/\d+/)?.[0] ?? '?'} bytes.`, 'invalid_request_error', null, 'body_too_large');
  }
  const status = fe.statusCode ?? 500;
  if (status < 500) return new ApiError(status, fe.message, 'invalid_request_error');
  return new ApiError(500, 'Internal server error.', 'server_error');
}

/**
 * Bodies are parsed as JSON whatever their content type (curl's `-d` sends form encoding), with the
 * parser's own message in the 400: Fastify's default parser drops it. JSON.parse makes `__proto__` an
 * own property, never a prototype, and bodies are never merged into other objects.
 */
function parseJsonBody(_request: unknown, body: string, done: (err: Error | null, value?: unknown) => void): void {
  if (body.trim() === '') {
    done(invalidRequest('The request body is empty; send a JSON object.', null, 'invalid_json'));
    return;
  }
  try {
    done(null, JSON.parse(body));
  } catch (e) {
    done(invalidRequest(`We could not parse the JSON body of your request: ${(e as Error).message}.`, null, 'invalid_json'));
  }
}
