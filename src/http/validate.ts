/** Validates one part of a request with zod; a failure is 400 validation_failed listing every issue. */
import type { z } from 'zod';
import { Errors } from '../core/errors';

export function parseInput<T extends z.ZodType>(schema: T, value: unknown, where: 'path' | 'query' | 'body'): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = result.error.issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message }));
  throw Errors.validation(`the request ${where} is not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, { errors });
}
