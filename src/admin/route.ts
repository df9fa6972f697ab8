/**
 * One declaration per admin endpoint: its zod schemas validate the request and, from the same
 * objects, describe it in `GET /api/v1/openapi.json`. Handlers receive parsed input and return a
 * status and body; errors are thrown and rendered as problem+json in one place.
 */
import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import type { Request, Response, Router } from 'express';
import { z } from './zod';
import { parseInput } from '../http/validate';
import type { ApiToken } from '../storage/tokens';
import { authenticate, requireScope, type Scope } from './auth';
import { Errors } from '../core/errors';


export interface HandlerInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  /** The raw bytes of a `text/csv` body, for routes declared with `csv: true`. */
  csv: Buffer;
  token: ApiToken;
  req: Request;
}

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** A non-JSON answer (an image, a text form) with its content type. */
  raw?: { contentType: string; content: Buffer | string };
}

export interface RouteSpec<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI-style path below /api/v1, e.g. `/devices/{id}`. */
  path: string;
  summary: string;
  scope: Scope;
  params?: P;
  query?: Q;
  body?: B;
  /** The body is a CSV file (`Content-Type: text/csv`), handed over as bytes in `csv`. */
  csv?: true;
  responses: Record<number, { description: string; schema?: z.ZodType }>;
  handle(input: HandlerInput<z.output<P>, z.output<Q>, z.output<B>>): Promise<Reply>;
}

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().openapi({ description: 'stable machine-readable error code', example: 'device_not_found' }),
  })
  .openapi('Problem');

const PROBLEM_RESPONSES = {
  400: 'validation_failed or malformed_json',
  401: 'unauthorized: missing or invalid API token',
  403: 'forbidden: the token role lacks the scope',
} as const;

export class AdminRoutes {
  readonly registry = new OpenAPIRegistry();

  constructor(
    private readonly router: Router,
    private readonly tokens: { authenticate(secret: string): Promise<ApiToken | undefined> },
  ) {
    this.registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  }

  add<P extends z.ZodType = z.ZodObject, Q extends z.ZodType = z.ZodObject, B extends z.ZodType = z.ZodUndefined>(spec: RouteSpec<P, Q, B>): void {
    this.#document(spec);
    const expressPath = spec.path.replace(/\{(\w+)\}/g, ':$1');
    this.router[spec.method](expressPath, authenticate(this.tokens), requireScope(spec.scope), async (req: Request, res: Response) => {
      const csvBody = Buffer.isBuffer(req.body);
      if (csvBody !== Boolean(spec.csv) && (csvBody || (req.body !== undefined && spec.csv))) {
        throw Errors.of('unsupported_media_type', spec.csv ? 'send the file as text/csv' : 'send the request body as application/json');
      }
      const input = {
        params: spec.params ? parseInput(spec.params, req.params, 'path') : undefined,
        query: spec.query ? parseInput(spec.query, req.query ?? {}, 'query') : undefined,
        body: spec.body ? parseInput(spec.body, req.body, 'body') : undefined,
        csv: csvBody ? (req.body as Buffer) : Buffer.alloc(0),
        token: req.apiToken!,
        req,
      } as HandlerInput<z.output<P>, z.output<Q>, z.output<B>>;
      const reply = await spec.handle(input);
      for (const [k, v] of Object.entries(reply.headers ?? {})) res.setHeader(k, v);
      if (reply.raw) res.status(reply.status).type(reply.raw.contentType).send(reply.raw.content);
      else if (reply.body === undefined) res.status(reply.status).end();
      else res.status(reply.status).json(reply.body);
    });
  }

  document(info: { version: string; serverUrl: string }): unknown {
    return new OpenApiGeneratorV31(this.registry.definitions).generateDocument({
      openapi: '3.1.0',
      info: { title: 'Mooring admin API', version: info.version, description: 'Devices, commands, enrollment tokens, events and API tokens.' },
      servers: [{ url: `${info.serverUrl}/api/v1` }],
      security: [{ bearer: [] }],
    });
  }

  #document(spec: RouteSpec<z.ZodType, z.ZodType, z.ZodType>): void {
    const responses: Record<string, unknown> = {};
    for (const [status, r] of Object.entries(spec.responses)) {
      responses[status] = r.schema ? { description: r.description, content: { 'application/json': { schema: r.schema } } } : { description: r.description };
    }
    for (const [status, description] of Object.entries(PROBLEM_RESPONSES)) {
      responses[status] ??= { description, content: { 'application/problem+json': { schema: ProblemSchema } } };
    }
    this.registry.registerPath({
      method: spec.method,
      path: spec.path,
      summary: spec.summary,
      description: `Requires scope \`${spec.scope}\`.`,
      request: {
        params: spec.params as z.ZodObject | undefined as never,
        query: spec.query as z.ZodObject | undefined as never,
        body: spec.csv
          ? { content: { 'text/csv': { schema: { type: 'string', format: 'binary' } } } }
          : spec.body ? { content: { 'application/json': { schema: spec.body } } } : undefined,
      },
      responses: responses as never,
    });
  }
}
