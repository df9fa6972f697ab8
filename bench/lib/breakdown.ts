/**
 * Where a service call's time goes, without touching the service: knex reports every statement
 * (transactions included) through 'query' / 'query-response', and the push scheduler is one object
 * we can wrap for the duration. Statement time runs from knex handing the query to pg (parameter
 * encoding included) to the parsed response; what remains is Node work (checks, payloads, pool waits).
 */
import type { PushScheduler } from '../../src/core/commands';
import type { Db } from '../../src/storage/db';

export interface StepTime {
  step: string;
  calls: number;
  ms: number;
}

interface KnexQuery {
  __knexQueryUid?: string;
  sql?: string;
}

/** Starts recording; `stop` returns the steps, slowest first. */
export function recordSteps(db: Db, pusher: PushScheduler): { stop(): StepTime[] } {
  const steps = new Map<string, StepTime>();
  const started = new Map<string, { step: string; t0: number }>();
  const add = (step: string, ms: number) => {
    const s = steps.get(step) ?? { step, calls: 0, ms: 0 };
    s.calls += 1;
    s.ms += ms;
    steps.set(step, s);
  };
  const onQuery = (q: KnexQuery) => {
    if (q.__knexQueryUid) started.set(q.__knexQueryUid, { step: statementLabel(q.sql ?? ''), t0: performance.now() });
  };
  const onDone = (_res: unknown, q: KnexQuery) => {
    const s = q.__knexQueryUid ? started.get(q.__knexQueryUid) : undefined;
    if (!s) return;
    started.delete(q.__knexQueryUid!);
    add(s.step, performance.now() - s.t0);
  };
  const onError = (_err: unknown, q: KnexQuery) => onDone(undefined, q);
  db.on('query', onQuery).on('query-response', onDone).on('query-error', onError);

  const original = pusher.pushBatch;
  pusher.pushBatch = async (...args: Parameters<PushScheduler['pushBatch']>) => {
    const t0 = performance.now();
    try {
      await original.apply(pusher, args);
    } finally {
      add('push fan-out scheduling (queue add)', performance.now() - t0);
    }
  };

  return {
    stop() {
      db.off('query', onQuery).off('query-response', onDone).off('query-error', onError);
      pusher.pushBatch = original;
      return [...steps.values()].sort((a, b) => b.ms - a.ms);
    },
  };
}

/** A short, stable name for a statement: its first words, whitespace collapsed. */
function statementLabel(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim();
  return `SQL: ${flat.length > 60 ? `${flat.slice(0, 60)}...` : flat}`;
}
