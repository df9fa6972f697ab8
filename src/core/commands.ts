/**
 * The one command queue shared by every platform: admins enqueue neutral commands, devices take the
 * next one for their enrollment and report on it. The rules live here; the SQL lives in
 * src/storage/commands.ts behind `CommandStore`.
 *
 * Lifecycle: queued -> sent -> acknowledged | error, with not_now (kept, re-pushed later), canceled
 * (only before the device has it) and expired (never delivered after `expires_at`).
 */
import { Errors, type ErrorCode } from './errors';
import { uuidv7 } from './ids';
import type { QueueGeneration } from './queue-generation';
import type { Page, PageRequest } from './pagination';
import type { CommandOutcome, PlatformRegistry, RefusalReason } from './platforms';
import type { Command, Device, DeviceFacts, EventInput, Json, Params } from './types';

export interface CommandRequest {
  type: string;
  params?: Params;
  idempotency_key?: string;
  /** Seconds until the command expires if not delivered. */
  expires_in?: number;
  priority?: number;
}

/** A device with the enrollment its commands go to (null when it has no live channel). */
export interface CommandTarget {
  device: DeviceFacts;
  enrollmentId: string | null;
}

export interface NewCommand {
  id: string;
  device_id: string;
  enrollment_id: string;
  platform: Device['platform'];
  type: string;
  params: Params;
  payload: string;
  priority: number;
  effect: string | null;
  idempotency_key: string | null;
  batch_id: string | null;
  requested_by: string | null;
  expires_at: Date;
}

export interface NewBatch {
  id: string;
  type: string;
  params: Params;
  idempotency_key: string | null;
  requested_by: string | null;
}

/** Why one device did not get a command: an error code, a human detail and, from platforms, a reason. */
export interface Refusal {
  code: ErrorCode;
  detail: string;
  reason?: RefusalReason;
}

/** The `seq` values (as text: bigint) of the first and last command a bulk chunk wrote. */
export interface SeqRange {
  first: string;
  last: string;
}

/** A bulk batch as its idempotency key finds it: `response` is null while it is still being written. */
export interface BatchRecord {
  id: string;
  response: BulkResult | null;
  created_at: Date;
}

export interface BulkResult {
  batch_id: string;
  accepted: string[];
  rejected: Array<{ device_id: string } & Refusal>;
}

export type ReportResult = { changed: boolean; command: Command | undefined };

export interface CommandStore {
  loadTargets(deviceIds: string[]): Promise<Map<string, CommandTarget>>;
  insertOne(command: NewCommand, event: EventInput): Promise<Command>;
  /**
   * Commits one chunk of a bulk batch (with the batch row, claiming its idempotency key, when it is
   * the first); returns the `seq` range its commands got.
   */
  writeBatchChunk(batch: NewBatch, commands: NewCommand[], opts: { first: boolean }): Promise<SeqRange | null>;
  /** Stores the batch's answer (replayed for its idempotency key) with its event. */
  finishBatch(batchId: string, response: BulkResult, event: EventInput): Promise<void>;
  /**
   * After a bulk request failed part way: cancels its commands no device has taken, frees its
   * idempotency key and records an event (with the counts added to `event.data`).
   */
  abandonBatch(batchId: string, event: EventInput): Promise<{ canceled: number; handedOut: number }>;
  findByIdempotencyKey(deviceId: string, key: string): Promise<Command | undefined>;
  findBatch(idempotencyKey: string): Promise<BatchRecord | undefined>;
  get(id: string): Promise<Command | undefined>;
  listForDevice(deviceId: string, page: PageRequest): Promise<Page<Command>>;
  /** Marks and returns the next deliverable command of an enrollment (FOR UPDATE SKIP LOCKED). */
  /** Marks and returns up to `limit` (default 1) deliverable commands, in delivery order. */
  takeNext(enrollmentId: string, opts: { skipNotNow: boolean; limit?: number }): Promise<Command[]>;
  /** Puts commands sent before `before` but never reported back in the queue; returns their enrollments. */
  requeueUnreported(before: Date, limit: number): Promise<string[]>;
  /** Applies an outcome if the command is still open on that enrollment; returns whether it changed. */
  applyOutcome(enrollmentId: string, commandId: string, outcome: CommandOutcome): Promise<ReportResult>;
  cancel(id: string, actor: string | null): Promise<{ command: Command | undefined; canceled: boolean }>;
  expireDue(limit: number): Promise<number>;
}

export interface PushScheduler {
  /** Wakes these enrollments; repeated requests for one enrollment coalesce while pending. */
  push(enrollmentIds: string[], opts?: { delayMs?: number }): Promise<void>;
  /** Wakes every enrollment of a bulk batch (or of the commands in `range`), fanned out in the background. */
  pushBatch(batchId: string, range?: SeqRange): Promise<void>;
}

export interface CommandServiceOptions {
  defaultTtlSeconds: number;
  redeliverAfterSeconds: number;
  notNowRetrySeconds: number;
  warn?: (obj: object, msg: string) => void;
  now?: () => Date;
  /** Moved whenever a queue gains work, before devices are woken (idle polls answered from memory check it). */
  generation?: QueueGeneration;
  /** Bulk chunk sizes (first, largest); tests shrink them. Default FIRST_BULK_CHUNK, BULK_CHUNK. */
  bulkChunks?: { first: number; max: number };
}

/**
 * Bulk requests are written a chunk at a time, one statement each, and every chunk's devices are
 * woken as soon as it commits: a lock to 10,000 devices starts pushing after the first chunk instead
 * of after the last. Chunks grow from FIRST_BULK_CHUNK (the first push comes early) to BULK_CHUNK. A
 * request no larger than the first chunk is one statement, and wakes its devices directly instead of
 * through a fan-out job.
 */
const FIRST_BULK_CHUNK = 500;
const BULK_CHUNK = 2_000;
/** How long a batch may stay unfinished before a request with its idempotency key takes it for dead. */
const BATCH_ABANDONED_AFTER_MS = 10 * 60_000;

/** Chunk boundaries for `n` devices: FIRST_BULK_CHUNK, doubling up to BULK_CHUNK. */
export function bulkChunks(n: number, first = FIRST_BULK_CHUNK, max = BULK_CHUNK): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let start = 0, size = first; start < n; start += size, size = Math.min(size * 2, max)) out.push([start, Math.min(start + size, n)]);
  return out;
}

export class CommandService {
  readonly #now: () => Date;

  constructor(
    private readonly store: CommandStore,
    private readonly platforms: PlatformRegistry,
    private readonly pusher: PushScheduler,
    private readonly opts: CommandServiceOptions,
  ) {
    this.#now = opts.now ?? (() => new Date());
  }

  /** Queues one command; a repeated idempotency key returns the first command unchanged. */
  async enqueue(deviceId: string, req: CommandRequest, actor: string | null): Promise<{ command: Command; created: boolean }> {
    const params = req.params ?? {};
    if (req.idempotency_key) {
      const existing = await this.store.findByIdempotencyKey(deviceId, req.idempotency_key);
      if (existing) return { command: this.#sameRequest(existing, req.type, params), created: false };
    }
    const target = (await this.store.loadTargets([deviceId])).get(deviceId);
    if (!target) throw Errors.deviceNotFound(deviceId);
    const row = this.#prepare(target, req, params, actor, null);
    if ('code' in row) throw Errors.of(row.code, row.detail, row.reason ? { reason: row.reason } : {});
    let command: Command;
    try {
      command = await this.store.insertOne(row, {
        type: 'command.queued',
        device_id: deviceId,
        command_id: row.id,
        actor,
        data: { type: req.type },
      });
    } catch (err) {
      // Two requests with one idempotency key raced; the loser answers with the winner's command.
      const winner = req.idempotency_key && (await this.store.findByIdempotencyKey(deviceId, req.idempotency_key));
      if (winner) return { command: this.#sameRequest(winner, req.type, params), created: false };
      throw err;
    }
    await this.#queueChanged();
    await this.#wake(() => this.pusher.push([row.enrollment_id]), { command_id: row.id });
    return { command, created: true };
  }

  /**
   * Queues one command for many devices. Devices that are unknown, not enrolled or not permitted are
   * returned in `rejected`; the rest are queued, a chunk at a time (see FIRST_BULK_CHUNK), and woken as
   * each chunk commits. If a chunk fails, the commands already queued that no device has taken are
   * canceled, the idempotency key is freed and the error is thrown: the request can simply be repeated.
   */
  async enqueueBulk(deviceIds: string[], req: CommandRequest, actor: string | null): Promise<BulkResult> {
    const replay = req.idempotency_key ? await this.#earlierBatch(req.idempotency_key) : undefined;
    if (replay) return replay;
    const params = req.params ?? {};
    const batch: NewBatch = { id: uuidv7(), type: req.type, params, idempotency_key: req.idempotency_key ?? null, requested_by: actor };
    const unique = [...new Set(deviceIds)];
    const result: BulkResult = { batch_id: batch.id, accepted: [], rejected: [] };
    const chunks = bulkChunks(unique.length, this.opts.bulkChunks?.first, this.opts.bulkChunks?.max);
    const direct = chunks.length <= 1;
    const enrollments: string[] = [];
    let written = false;
    try {
      // The next chunk is looked up and built while this one is written.
      let next = this.#buildChunk(unique.slice(...chunks[0]!), batch, req, result);
      for (let i = 0; i < chunks.length; i++) {
        const rows = await next;
        if (i + 1 < chunks.length) {
          next = this.#buildChunk(unique.slice(...chunks[i + 1]!), batch, req, result);
          next.catch(() => undefined); // awaited on the next turn; never an unhandled rejection if this write fails
        }
        // A first chunk with nothing to write still writes the batch row (it holds the answer).
        if (rows.length === 0 && written) continue;
        const range = await this.store.writeBatchChunk(batch, rows, { first: !written });
        written = true;
        if (!range) continue;
        if (direct) enrollments.push(...rows.map((r) => r.enrollment_id));
        else {
          await this.#queueChanged();
          await this.#wake(() => this.pusher.pushBatch(batch.id, range), { batch_id: batch.id });
        }
      }
      await this.store.finishBatch(batch.id, result, {
        type: 'commands.queued',
        actor,
        data: { batch_id: batch.id, type: req.type, accepted: result.accepted.length, rejected: result.rejected.length },
      });
    } catch (err) {
      if (written) {
        await this.#abandon(batch.id, actor, err);
        throw err;
      }
      // Nothing written: perhaps a concurrent request claimed the same key first. Answer as it does
      // (409 while it is still being written).
      const winner = req.idempotency_key ? await this.#earlierBatch(req.idempotency_key) : undefined;
      if (winner) return winner;
      throw err;
    }
    if (enrollments.length > 0) {
      await this.#queueChanged();
      await this.#wake(() => this.pusher.push(enrollments), { batch_id: batch.id });
    }
    return result;
  }

  /** Looks up one chunk's devices and builds their commands; refusals go to `result.rejected`. */
  async #buildChunk(ids: string[], batch: NewBatch, req: CommandRequest, result: BulkResult): Promise<NewCommand[]> {
    const targets = await this.store.loadTargets(ids);
    const rows: NewCommand[] = [];
    for (const deviceId of ids) {
      const target = targets.get(deviceId);
      if (!target) {
        result.rejected.push({ device_id: deviceId, code: 'device_not_found', detail: `no device with id ${deviceId}` });
        continue;
      }
      const row = this.#prepare(target, req, batch.params, batch.requested_by, batch.id);
      if ('code' in row) {
        result.rejected.push({ device_id: deviceId, ...row });
        continue;
      }
      rows.push(row);
      result.accepted.push(deviceId);
    }
    return rows;
  }

  /**
   * The answer of an earlier request with this idempotency key; throws 409 while that request is
   * still being written. A batch left unfinished for BATCH_ABANDONED_AFTER_MS (its process died
   * mid-request) is abandoned, and the key is free again.
   */
  async #earlierBatch(key: string): Promise<BulkResult | undefined> {
    const earlier = await this.store.findBatch(key);
    if (!earlier) return undefined;
    if (earlier.response) return earlier.response;
    if (this.#now().getTime() - earlier.created_at.getTime() < BATCH_ABANDONED_AFTER_MS) {
      throw Errors.idempotencyConflict(`a bulk request with idempotency key ${key} is still being queued (batch ${earlier.id}); repeat it in a moment`, {
        batch_id: earlier.id,
      });
    }
    await this.#abandon(earlier.id, null, new Error('left unfinished'));
    return undefined;
  }

  async #abandon(batchId: string, actor: string | null, cause: unknown): Promise<void> {
    const reason = cause instanceof Error ? cause.message : String(cause);
    try {
      const { canceled, handedOut } = await this.store.abandonBatch(batchId, { type: 'commands.batch_failed', actor, data: { reason } });
      this.opts.warn?.({ batch_id: batchId, canceled, handed_out: handedOut, reason }, 'bulk request failed part way: its queued commands were canceled');
    } catch (err) {
      this.opts.warn?.({ batch_id: batchId, err, reason }, 'bulk request failed part way and its queued commands could not be canceled; they stay queued');
    }
  }

  /** The command, or undefined (for device-facing lookups that must not throw). */
  find(id: string): Promise<Command | undefined> {
    return this.store.get(id);
  }

  async get(id: string): Promise<Command> {
    const command = await this.store.get(id);
    if (!command) throw Errors.commandNotFound(id);
    return command;
  }

  listForDevice(deviceId: string, page: PageRequest): Promise<Page<Command>> {
    return this.store.listForDevice(deviceId, page);
  }

  /** Cancels a command the device has not been handed yet; 409 once it was sent. */
  async cancel(id: string, actor: string | null): Promise<Command> {
    const { command, canceled } = await this.store.cancel(id, actor);
    if (!command) throw Errors.commandNotFound(id);
    if (!canceled) throw Errors.commandNotCancelable(`command ${id} is ${command.status} and can no longer be canceled`, { command_status: command.status });
    return command;
  }

  /**
   * The next command for a polling enrollment, marked sent. After a NotNow the device gets the next
   * *other* command (`skipNotNow`); NotNow'd commands come back at its next idle poll.
   */
  async next(enrollmentId: string, opts: { skipNotNow?: boolean } = {}): Promise<Command | undefined> {
    return (await this.store.takeNext(enrollmentId, { skipNotNow: opts.skipNotNow ?? false }))[0];
  }

  /** Up to `limit` commands at once, for protocols that answer a check-in with a list. */
  nextMany(enrollmentId: string, limit: number): Promise<Command[]> {
    return this.store.takeNext(enrollmentId, { skipNotNow: false, limit });
  }

  /**
   * Redelivery: a command handed out but never reported (a dropped connection, a device that crashed)
   * goes back in the queue after `redeliverAfterSeconds`, and its device is woken to fetch it again.
   */
  async requeueUnreported(chunk = 5000): Promise<number> {
    const before = new Date(this.#now().getTime() - this.opts.redeliverAfterSeconds * 1000);
    let total = 0;
    for (;;) {
      const enrollments = await this.store.requeueUnreported(before, chunk);
      total += enrollments.length;
      if (enrollments.length) await this.#queueChanged();
      if (enrollments.length) await this.#wake(() => this.pusher.push(enrollments), { requeued: enrollments.length });
      if (enrollments.length < chunk) return total;
    }
  }

  /**
   * Records a device's report. Repeats and reports on commands that are not open on this enrollment
   * change nothing (`changed: false`). NotNow keeps the command and schedules a re-push.
   */
  async report(enrollmentId: string, commandId: string, outcome: CommandOutcome): Promise<ReportResult> {
    const result = await this.store.applyOutcome(enrollmentId, commandId, outcome);
    if (result.changed && outcome.status === 'not_now') {
      // The command waits for the device's next session: a remembered "nothing queued" is no longer true.
      await this.#queueChanged();
      await this.#wake(() => this.pusher.push([enrollmentId], { delayMs: this.opts.notNowRetrySeconds * 1000 }), {
        command_id: commandId,
      });
    }
    return result;
  }

  /** Marks commands past `expires_at` as expired, in chunks; returns how many. */
  async expireDue(chunk = 5000): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.store.expireDue(chunk);
      total += n;
      if (n < chunk) return total;
    }
  }

  /** A queue gained work: move the generation, or say loudly that idle caches may be stale. */
  async #queueChanged(): Promise<void> {
    try {
      await this.opts.generation?.bump();
    } catch (err) {
      this.opts.warn?.({ err }, 'could not move the queue generation: idle polls may answer from a stale cache until their entries expire');
    }
  }

  #prepare(
    target: CommandTarget,
    req: CommandRequest,
    params: Params,
    actor: string | null,
    batchId: string | null,
  ): NewCommand | Refusal {
    const { device, enrollmentId } = target;
    if (!enrollmentId || device.status === 'unenrolled') {
      return { code: 'device_not_enrolled', detail: `device ${device.id} is ${device.status} and has no management channel` };
    }
    const permission = this.platforms.permit(device, req.type, params);
    if (!permission.allowed) return { code: permission.code, detail: permission.detail, reason: permission.reason };
    const id = uuidv7();
    const ttl = req.expires_in ?? this.platforms.defaultTtlSeconds(device.platform) ?? this.opts.defaultTtlSeconds;
    return {
      id,
      device_id: device.id,
      enrollment_id: enrollmentId,
      platform: device.platform,
      type: req.type,
      params,
      payload: this.platforms.build(device, { id, type: req.type, params }),
      priority: req.priority ?? 0,
      effect: permission.effect ?? null,
      idempotency_key: batchId ? null : (req.idempotency_key ?? null),
      batch_id: batchId,
      requested_by: actor,
      expires_at: new Date(this.#now().getTime() + ttl * 1000),
    };
  }

  #sameRequest(existing: Command, type: string, params: Params): Command {
    if (existing.type !== type || canonical(existing.params) !== canonical(params)) {
      throw Errors.idempotencyConflict('this idempotency key was already used for a different command', { command_id: existing.id });
    }
    return existing;
  }

  /** A push failure never fails the request: the command is stored and the device gets it at its next poll. */
  async #wake(push: () => Promise<void>, context: object): Promise<void> {
    try {
      await push();
    } catch (err) {
      this.opts.warn?.({ ...context, err }, 'could not schedule push; the device gets the command at its next check-in');
    }
  }
}

/** JSON with sorted keys, so two equal parameter objects compare equal whatever their key order. */
function canonical(value: Json | Params): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}
