/**
 * Request schemas of the OpenAI-compatible endpoints, as TypeBox (JSON Schema) for Fastify's ajv.
 *
 * Conventions that make ajv's errors readable (see errors.ts `fromValidation`):
 * - optional fields are `nullable`, since clients send `"stop": null` for "unset";
 * - enumerations are a JSON Schema `enum` (one error listing the allowed values), not a union of literals;
 * - every union carries a `description` that completes "<field> must be ...".
 * Unknown fields are accepted and ignored, as OpenAI-compatible servers commonly do.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** Limits the schemas depend on. */
export interface SchemaLimits {
  /** Largest `n` (choices per request). */
  maxN: number;
}

/** Optional, and null allowed: ajv's `nullable` for typed schemas, one more anyOf branch for unions. */
const nullable = <T extends TSchema>(t: T) =>
  Type.Optional(Type.Unsafe<Static<T> | null>(Array.isArray(t.anyOf) ? { ...t, anyOf: [...t.anyOf, { type: 'null' }] } : { ...t, nullable: true }));

const ROLES = ['system', 'user', 'assistant'] as const;

const TextPart = Type.Object({ type: Type.Unsafe<'text'>({ type: 'string', enum: ['text'] }), text: Type.String() });

/** Sampling and output fields shared by both endpoints. */
function commonFields(limits: SchemaLimits) {
  return {
    model: Type.String({ minLength: 1 }),
    max_tokens: nullable(Type.Integer({ minimum: 1 })),
    temperature: nullable(Type.Number({ minimum: 0, maximum: 2 })),
    top_p: nullable(Type.Number({ minimum: 0, maximum: 1 })),
    stop: nullable(
      Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 4 })], { description: 'a string or an array of at most 4 strings' }),
    ),
    seed: nullable(Type.Integer()),
    n: nullable(Type.Integer({ minimum: 1, maximum: limits.maxN })),
    stream: nullable(Type.Boolean()),
    stream_options: nullable(Type.Object({ include_usage: nullable(Type.Boolean()) })),
    user: nullable(Type.String()),
    frequency_penalty: nullable(Type.Number({ minimum: -2, maximum: 2 })),
    presence_penalty: nullable(Type.Number({ minimum: -2, maximum: 2 })),
  };
}

/** POST /v1/completions. */
export function completionBodySchema(limits: SchemaLimits) {
  return Type.Object({
    ...commonFields(limits),
    prompt: Type.Union(
      [Type.String(), Type.Array(Type.String(), { minItems: 1, maxItems: 1 }), Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 })],
      { description: 'a string, an array holding one string, or a non-empty array of token ids' },
    ),
    echo: nullable(Type.Boolean()),
    logprobs: nullable(Type.Integer({ minimum: 0 })),
    best_of: nullable(Type.Integer({ minimum: 1 })),
    suffix: nullable(Type.String()),
  });
}
export type CompletionBody = Static<ReturnType<typeof completionBodySchema>>;

/** POST /v1/chat/completions. */
export function chatBodySchema(limits: SchemaLimits) {
  return Type.Object({
    ...commonFields(limits),
    messages: Type.Array(
      Type.Object({
        role: Type.Unsafe<(typeof ROLES)[number]>({ type: 'string', enum: [...ROLES] }),
        content: Type.Union([Type.String(), Type.Array(TextPart)], { description: "a string or an array of text parts ({ type: 'text', text })" }),
        name: nullable(Type.String()),
      }),
      { minItems: 1 },
    ),
    max_completion_tokens: nullable(Type.Integer({ minimum: 1 })),
    logprobs: nullable(Type.Boolean()),
  });
}
export type ChatBody = Static<ReturnType<typeof chatBodySchema>>;
export type ChatMessage = ChatBody['messages'][number];

/** GET /v1/usage: dates are parsed by the handler (ISO 8601 or epoch milliseconds). */
export const UsageQuerySchema = Type.Object({
  from: Type.String({ minLength: 1 }),
  to: Type.Optional(Type.String({ minLength: 1 })),
  tenant: Type.Optional(Type.String({ minLength: 1 })),
});
export type UsageQuery = Static<typeof UsageQuerySchema>;
