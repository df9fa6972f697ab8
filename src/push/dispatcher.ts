/**
 * The push dispatcher: one BullMQ job per enrollment, coalesced while pending, sent by whichever
 * provider serves the enrollment's platform, retried with exponential backoff and jitter.
 *
 * Jobs on the `push` queue:
 *   push   { enrollment_id }  wake one channel; deduplicated on the enrollment id
 *   fanout { batch_id, first_seq?, last_seq? }
 *                             wake every channel of a bulk command batch (or of one committed chunk
 *                             of it: its commands' seq range), a page at a time: sent straight from
 *                             this job (one lookup per page, not one job per device); only a push
 *                             that must be retried becomes a `push` job of its own
 */
import type { PushScheduler, SeqRange } from '../core/commands';
import type { PushChannel } from '../core/types';
import { pushOutcomes } from '../metrics';
import type { QueueHandle } from '../queue/backend';
import type { PushProviderRegistry, PushResult } from './provider';
import { Slots } from './slots';

export const PUSH_QUEUE = 'push';

export type PushJob = { enrollment_id: string } | { batch_id: string; first_seq?: string; last_seq?: string };

/**
 * Retries for transient failures: the worker's `pushBackoff` spaces them (2s, 4s, 8s ... about 8.5
 * minutes in all with the default base), never sooner than the provider's Retry-After.
 */
export const DEFAULT_PUSH_RETRY_DELAY_MS = 2000;
export const PUSH_BACKOFF = 'mooring-push';

const PUSH_JOB_OPTIONS = {
  attempts: 9,
  backoff: { type: PUSH_BACKOFF },
  removeOnComplete: true,
  removeOnFail: 1000,
};

const FANOUT_PAGE = 1000;
/**
 * Sends in flight at once across every fan-out of a worker (a bulk request fans out one job per chunk,
 * and those run side by side): APNs' bound per HTTP/2 connection. Providers bound themselves below
 * this where they must (FCM and WNS: HTTPS_PUSH_MAX_IN_FLIGHT, one connection per request).
 */
export const FANOUT_CONCURRENCY = 1000;

export class PushDispatcher implements PushScheduler {
  constructor(private readonly queue: QueueHandle<PushJob>) {}

  async push(enrollmentIds: string[], opts: { delayMs?: number } = {}): Promise<void> {
    const unique = [...new Set(enrollmentIds)];
    for (let i = 0; i < unique.length; i += FANOUT_PAGE) {
      await this.queue.addBulk(
        unique.slice(i, i + FANOUT_PAGE).map((id) => ({
          name: 'push',
          data: { enrollment_id: id },
          opts: {
            ...PUSH_JOB_OPTIONS,
            delay: opts.delayMs ?? 0,
            // While a push for this enrollment waits, another request joins it; an earlier request
            // pulls a delayed one forward; one arriving mid-send runs once more afterwards.
            deduplication: { id: `push:${id}`, reschedule: true, keepLastIfActive: true },
          },
        })),
      );
    }
  }

  async pushBatch(batchId: string, range?: SeqRange): Promise<void> {
    if (!range) return void (await this.queue.add('fanout', { batch_id: batchId }, { ...PUSH_JOB_OPTIONS, jobId: `fanout-${batchId}` }));
    const data = { batch_id: batchId, first_seq: range.first, last_seq: range.last };
    await this.queue.add('fanout', data, { ...PUSH_JOB_OPTIONS, jobId: `fanout-${batchId}-${range.first}` });
  }
}

export interface PushWorkerDeps {
  providers: PushProviderRegistry;
  enrollments: {
    getEnrollment(id: string): Promise<PushChannel | undefined>;
    markPushTokenDead(enrollmentId: string, reason: string): Promise<boolean>;
    /** A page of the batch's push channels (only those of commands in `range` when given), by enrollment id. */
    channelsOfBatch(batchId: string, afterId: string | null, limit: number, range?: SeqRange): Promise<PushChannel[]>;
  };
  dispatcher: PushDispatcher;
  log: { warn(obj: object, msg: string): void };
  /** Delay before a fan-out push that failed transiently is tried again as its own job. */
  retryDelayMs?: number;
}

/** Thrown for a transient failure so BullMQ retries the job with backoff. */
export class PushRetryError extends Error {
  override name = 'PushRetryError';

  constructor(
    reason: string,
    /** The provider's own "not before" (Retry-After), which the backoff honours. */
    readonly retryAfterMs?: number,
  ) {
    super(reason);
  }
}

/**
 * The push queue's backoff: exponential from `baseMs` with +/- 50% jitter, but never sooner than the
 * provider asked (Retry-After). BullMQ calls it with the attempts made so far and the job's error.
 */
export function pushBackoff(baseMs: number, random: () => number = Math.random) {
  return (attemptsMade: number, _type?: string, err?: Error): number => {
    const exponential = baseMs * 2 ** Math.max(0, attemptsMade - 1);
    const jittered = Math.round(exponential * (0.5 + random()));
    return Math.max(jittered, err instanceof PushRetryError ? (err.retryAfterMs ?? 0) : 0);
  };
}

/** The job processor the `mooring worker` runs on the push queue. */
export function pushProcessor(deps: PushWorkerDeps) {
  const sends = new Slots(FANOUT_CONCURRENCY);
  return async (job: { name: string; data: PushJob }): Promise<string> => {
    if ('batch_id' in job.data) {
      const { batch_id, first_seq, last_seq } = job.data;
      return fanout(deps, sends, batch_id, first_seq && last_seq ? { first: first_seq, last: last_seq } : undefined);
    }
    return sendOne(deps, job.data.enrollment_id);
  };
}

/**
 * Wakes every channel of a batch. Pages of enrollments are read ahead while sends run, and the sends
 * form one continuous stream (FANOUT_CONCURRENCY lanes over all pages): a lane that finishes takes
 * the next channel whatever page it is on, so the stream never drains at a page boundary.
 */
async function fanout(deps: PushWorkerDeps, sends: Slots, batchId: string, range: SeqRange | undefined): Promise<string> {
  const counts: Record<string, number> = {};
  const retry: string[] = [];
  let retryAfterMs = 0;
  await forEachLimited(pagesOfBatch(deps, batchId, range), FANOUT_CONCURRENCY, async (e) => {
    try {
      const outcome = await sends.run(() => deliver(deps, e));
      counts[outcome] = (counts[outcome] ?? 0) + 1;
    } catch (err) {
      if (!(err instanceof PushRetryError)) throw err;
      retry.push(e.id);
      retryAfterMs = Math.max(retryAfterMs, err.retryAfterMs ?? 0);
    }
  });
  // Transient failures carry on as jobs of their own, with the usual backoff from there.
  if (retry.length) {
    counts.retry = retry.length;
    await deps.dispatcher.push(retry, { delayMs: Math.max(retryAfterMs, deps.retryDelayMs ?? DEFAULT_PUSH_RETRY_DELAY_MS) });
  }
  return `fanned out ${Object.entries(counts).map(([k, n]) => `${k} ${n}`).join(', ') || 'nothing'}`;
}

/** The batch's channels a page at a time, the next page read while this one is used. */
async function* pagesOfBatch(deps: PushWorkerDeps, batchId: string, range: SeqRange | undefined): AsyncGenerator<PushChannel[]> {
  const loadPage = (after: string | null) => deps.enrollments.channelsOfBatch(batchId, after, FANOUT_PAGE, range);
  let page = loadPage(null);
  for (;;) {
    const channels = await page;
    if (channels.length === 0) return;
    page = loadPage(channels[channels.length - 1]!.id);
    page.catch(() => undefined); // awaited at the next turn; never an unhandled rejection meanwhile
    yield channels;
  }
}

/** Runs `fn` over every item of the pages, at most `limit` at once, in one stream. */
async function forEachLimited<T>(pages: AsyncIterator<T[]>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const items: T[] = [];
  let next = 0;
  let exhausted = false;
  let refill: Promise<void> | undefined;
  // One reader at a time: lanes that run dry wait for the same page.
  const more = () =>
    (refill ??= pages.next().then((r) => {
      // Every item so far is taken (lanes hold their own): start the list afresh, so memory stays a page.
      items.length = 0;
      next = 0;
      if (r.done) exhausted = true;
      else items.push(...r.value);
      refill = undefined;
    }));
  const lane = async () => {
    for (;;) {
      if (next < items.length) await fn(items[next++]!);
      else if (exhausted) return;
      else await more();
    }
  };
  await Promise.all(Array.from({ length: limit }, lane));
}

async function sendOne(deps: PushWorkerDeps, enrollmentId: string): Promise<string> {
  const e = await deps.enrollments.getEnrollment(enrollmentId);
  if (!e) {
    pushOutcomes.inc({ platform: 'unknown', outcome: 'no_token' });
    return 'no_token';
  }
  return deliver(deps, e);
}

/** One push to one channel; throws PushRetryError for a transient failure. */
async function deliver(deps: PushWorkerDeps, e: PushChannel): Promise<string> {
  if (e.status === 'unenrolled' || !e.push_token || e.push_token_dead_at) {
    pushOutcomes.inc({ platform: e.platform, outcome: 'no_token' });
    return 'no_token';
  }
  const provider = deps.providers.get(e.platform);
  if (!provider) {
    pushOutcomes.inc({ platform: e.platform, outcome: 'no_provider' });
    return 'no_provider';
  }
  let result: PushResult;
  try {
    result = await provider.send({
      enrollmentId: e.id,
      deviceId: e.device_id,
      platform: e.platform,
      token: e.push_token,
      topic: e.push_topic,
      pushMagic: e.push_magic,
    });
  } catch (err) {
    result = { outcome: 'retry', reason: (err as Error).message };
  }
  pushOutcomes.inc({ platform: e.platform, outcome: result.outcome });
  switch (result.outcome) {
    case 'sent':
      return 'sent';
    case 'dead_token':
      await deps.enrollments.markPushTokenDead(e.id, result.reason);
      return 'dead_token';
    case 'failed':
      deps.log.warn({ enrollment_id: e.id, reason: result.reason }, 'push refused; not retrying');
      return 'failed';
    case 'retry':
      throw new PushRetryError(result.reason, result.retryAfterMs);
  }
}
