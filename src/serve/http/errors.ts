/**
 * OpenAI-style error objects: every failure the HTTP layer reports is `{ error: { message, type, param,
 * code } }` with the status OpenAI would use, so OpenAI clients raise their usual exception classes
 * (401 → AuthenticationError, 429 → RateLimitError, ...) and show our message.
 */
import type { FastifySchemaValidationError } from 'fastify';

/** Fastify's validation error; with ajv's `verbose` option it also carries the failing schema. */
export type ValidationIssue = FastifySchemaValidationError & { parentSchema?: unknown };

/** The `type` values OpenAI uses (plus `not_found_error` for unknown routes). */
export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

/** The JSON body of an error response. */
export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

/** An error that becomes one HTTP response: status, OpenAI error object and extra headers (Retry-After). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The response body. */
  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 for a request field the client got wrong. */
export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** 401: no key, or a key the ledger does not know (or revoked). */
export function authenticationError(missing: boolean): ApiError {
  return missing
    ? new ApiError(401, "You didn't provide an API key. Provide it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY).", 'authentication_error', null, 'missing_api_key')
    : new ApiError(401, 'Incorrect API key provided.', 'authentication_error', null, 'invalid_api_key');
}

/** 404 model_not_found, as OpenAI answers for a model id it does not serve. */
export function modelNotFound(model: string, served: string): ApiError {
  return new ApiError(404, `The model '${model}' does not exist; this server serves '${served}'.`, 'invalid_request_error', 'model', 'model_not_found');
}

/** 429 with Retry-After, naming the limit that was hit. */
export function rateLimited(limit: string, retryAfterSeconds: number): ApiError {
  const secs = Math.max(1, Math.ceil(retryAfterSeconds));
  return new ApiError(429, `Rate limit reached: ${limit}. Retry after ${secs} s.`, 'rate_limit_error', null, 'rate_limit_exceeded', { 'retry-after': String(secs) });
}

/** 503 with Retry-After: the engine's queue is full. */
export function overloaded(message: string, retryAfterSeconds: number): ApiError {
  const secs = Math.max(1, Math.ceil(retryAfterSeconds));
  return new ApiError(503, `The server is overloaded (${message}). Retry after ${secs} s.`, 'server_error', null, 'engine_overloaded', { 'retry-after': String(secs) });
}

/** 500 for an engine failure or a bug; the message is the cause, never a stack. */
export function serverError(message: string): ApiError {
  return new ApiError(500, message, 'server_error', null, null);
}

/** `/messages/1/role` → `messages[1].role`: the field as a client writes it. */
export function pointerToParam(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^\d+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  }
  return out;
}

const ARTICLE: Record<string, string> = { number: 'a number', integer: 'an integer', string: 'a string', boolean: 'a boolean', array: 'an array', object: 'an object', null: 'null' };

/** "between 0 and 2", "at least 1", ... from a schema's bounds. */
function rangePhrase(schema: Record<string, unknown>): string | undefined {
  const lo = schema.minimum ?? schema.exclusiveMinimum;
  const hi = schema.maximum ?? schema.exclusiveMaximum;
  const loEx = schema.exclusiveMinimum !== undefined;
  const hiEx = schema.exclusiveMaximum !== undefined;
  if (lo !== undefined && hi !== undefined) return !loEx && !hiEx ? `between ${lo} and ${hi}` : `${loEx ? 'greater than' : 'at least'} ${lo} and ${hiEx ? 'less than' : 'at most'} ${hi}`;
  if (lo !== undefined) return `${loEx ? 'greater than' : 'at least'} ${lo}`;
  if (hi !== undefined) return `${hiEx ? 'less than' : 'at most'} ${hi}`;
  return undefined;
}

/**
 * The 400 for Fastify's ajv validation errors (ajv runs with `verbose`, so each error carries its
 * schema). For a union (anyOf) the branch errors are noise; the union's `description` says what the
 * field may be, so that is what the client reads.
 */
export function fromValidation(errors: readonly ValidationIssue[], context: string): ApiError {
  const e = errors.find((x) => x.keyword === 'anyOf') ?? errors[0];
  if (!e) return invalidRequest(`Invalid request ${context}.`);
  const param = pointerToParam(e.instancePath);
  const schema = (e.parentSchema ?? {}) as Record<string, unknown>;
  const where = context === 'querystring' ? 'query parameter ' : '';
  if (param === '' && e.keyword === 'type') return invalidRequest(`The request ${context === 'querystring' ? 'query' : 'body'} must be ${ARTICLE[String(e.params.type)] ?? e.params.type}.`);
  const name = `${where}${param}`;
  switch (e.keyword) {
    case 'required': {
      const missing = String(e.params.missingProperty);
      const full = param ? `${param}.${missing}` : missing;
      return invalidRequest(`Missing required parameter: '${full}'.`, full);
    }
    case 'type':
      return invalidRequest(`${name} must be ${ARTICLE[String(e.params.type)] ?? e.params.type}.`, param);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return invalidRequest(`${name} must be ${rangePhrase(schema) ?? e.message}.`, param);
    case 'enum':
      return invalidRequest(`${name} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}.`, param);
    case 'anyOf':
      return invalidRequest(`${name} must be ${typeof schema.description === 'string' ? schema.description : 'of another type'}.`, param);
    case 'minItems':
      return invalidRequest(`${name} must have at least ${e.params.limit} element${e.params.limit === 1 ? '' : 's'}.`, param);
    case 'maxItems':
      return invalidRequest(`${name} must have at most ${e.params.limit} element${e.params.limit === 1 ? '' : 's'}.`, param);
    case 'minLength':
      return invalidRequest(e.params.limit === 1 ? `${name} must not be empty.` : `${name} must be at least ${e.params.limit} characters long.`, param);
    case 'const':
      return invalidRequest(`${name} must be ${JSON.stringify(e.params.allowedValue)}.`, param);
    default:
      return invalidRequest(`${name} ${e.message ?? 'is invalid'}.`, param);
  }
}
