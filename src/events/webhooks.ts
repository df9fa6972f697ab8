/**
 * Webhooks: every event is POSTed as JSON to each configured URL, signed with
 * `X-Mooring-Signature: sha256=<hex HMAC-SHA256 of the body>`.
 *
 * The events table is the outbox. A relay claims unpublished events (SKIP LOCKED, so several workers
 * can run it), turns each (event, URL) into a job on the `webhooks` queue with a stable job id, and
 * marks the events published in the same transaction. A crash between the two re-adds jobs whose ids
 * already exist, which BullMQ ignores; a failed delivery retries with backoff. So none is lost.
 */
import crypto from 'node:crypto';
import type { MooringEvent } from '../core/types';
import { webhookDeliveries } from '../metrics';
import type { QueueHandle } from '../queue/backend';

export const WEBHOOK_QUEUE = 'webhooks';

export interface WebhookJob {
  url: string;
  event: WebhookBody;
}

export interface WebhookBody {
  id: number;
  type: string;
  device_id: string | null;
  command_id: string | null;
  actor: string | null;
  data: unknown;
  created_at: string;
}

/** Retries: 5s, 10s, 20s ... for about 3 hours in all, each with jitter. */
export const DEFAULT_WEBHOOK_RETRY_DELAY_MS = 5000;

export function sign(secret: string, body: string): string {
  return `sha256=${crypto.createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Builds the `publish` step of the outbox relay: one job per event and URL. */
export function webhookPublisher(queue: QueueHandle<WebhookJob>, urls: string[], retryDelayMs = DEFAULT_WEBHOOK_RETRY_DELAY_MS) {
  const jobOptions = { attempts: 12, backoff: { type: 'exponential', delay: retryDelayMs, jitter: 0.3 }, removeOnComplete: true, removeOnFail: 5000 };
  return async (events: MooringEvent[]): Promise<void> => {
    if (urls.length === 0) return;
    await queue.addBulk(
      events.flatMap((e) =>
        urls.map((url, i) => ({
          name: e.type,
          data: { url, event: toBody(e) },
          opts: { ...jobOptions, jobId: `event-${e.id}-url-${i}` },
        })),
      ),
    );
  };
}

function toBody(e: MooringEvent): WebhookBody {
  return {
    id: e.id,
    type: e.type,
    device_id: e.device_id,
    command_id: e.command_id,
    actor: e.actor,
    data: e.data,
    created_at: e.created_at.toISOString(),
  };
}

/** The job processor that delivers one webhook; any non-2xx answer or network error is retried. */
export function webhookProcessor(secret: string, timeoutMs = 10_000) {
  return async (job: { id?: string; data: WebhookJob; attemptsMade: number }): Promise<number> => {
    const body = JSON.stringify(job.data.event);
    let res: Response;
    try {
      res = await fetch(job.data.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Mooring-Webhook/1',
          'x-mooring-event': job.data.event.type,
          'x-mooring-delivery': job.id ?? '',
          'x-mooring-signature': sign(secret, body),
        },
        body,
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'manual',
      });
    } catch (err) {
      webhookDeliveries.inc({ outcome: 'network_error' });
      throw new Error(`webhook ${job.data.url}: ${(err as Error).message}`);
    }
    await res.arrayBuffer().catch(() => undefined); // drain so the connection is reused
    if (res.status < 200 || res.status >= 300) {
      webhookDeliveries.inc({ outcome: 'rejected' });
      throw new Error(`webhook ${job.data.url} answered ${res.status}`);
    }
    webhookDeliveries.inc({ outcome: 'delivered' });
    return res.status;
  };
}
