/**
 * GET /v1/usage?from=&to=[&tenant=]: the caller's usage and cost over a time range, per model, from the
 * ledger. Admins may ask for one other tenant (`tenant=<id>`) or all (`tenant=all`).
 */
import type { FastifyInstance } from 'fastify';
import type { ServeContext } from './context.js';
import { ApiError, invalidRequest } from './errors.js';
import { UsageQuerySchema, type UsageQuery } from './schemas.js';

/** ISO 8601 date/time or epoch milliseconds → epoch ms; a 400 naming the parameter otherwise. */
export function parseInstant(value: string, param: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : NaN;
  if (!Number.isFinite(ms)) throw invalidRequest(`query parameter ${param} must be an ISO 8601 date (2025-01-31 or 2025-01-31T12:00:00Z) or epoch milliseconds, got '${value}'.`, param);
  return ms;
}

export function registerUsageRoute(app: FastifyInstance, ctx: ServeContext): void {
  app.get<{ Querystring: UsageQuery }>('/v1/usage', { schema: { querystring: UsageQuerySchema } }, async (request) => {
    const principal = request.principal!;
    const q = request.query;
    const from = parseInstant(q.from, 'from');
    const to = q.to === undefined ? Date.now() : parseInstant(q.to, 'to');
    if (!(from < to)) throw invalidRequest(`query parameter from must be before to (got from=${new Date(from).toISOString()}, to=${new Date(to).toISOString()}).`, 'from');
    const own = principal.tenant.id;
    const wanted = q.tenant ?? own;
    if (wanted !== own && !principal.tenant.admin) throw new ApiError(403, `Only admin keys may read another tenant's usage (tenant=${wanted}).`, 'permission_error', 'tenant', 'forbidden');
    const rows = ctx.ledger.summary({ from, to, ...(wanted === 'all' ? {} : { tenantId: wanted }) });
    return {
      object: 'list',
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      data: rows.map((r) => ({
        tenant_id: r.tenantId,
        tenant_name: r.tenantName,
        model: r.model,
        requests: r.requests,
        prompt_tokens: r.promptTokens,
        completion_tokens: r.completionTokens,
        cached_tokens: r.cachedTokens,
        total_tokens: r.promptTokens + r.completionTokens,
        cost: r.cost,
      })),
    };
  });
}
