/**
 * The command queue in Postgres. Every state change is one statement (or one transaction) that also
 * writes its audit event, so a crash never leaves a command without its trail.
 */
import type { BatchRecord, BulkResult, CommandStore, CommandTarget, NewBatch, NewCommand, ReportResult, SeqRange } from '../core/commands';
import type { Page, PageRequest } from '../core/pagination';
import type { CommandOutcome } from '../core/platforms';
import { DEVICE_FACTS, type Command, type DeviceFacts, type EventInput } from '../core/types';
import type pg from 'pg';
import type { Db } from './db';
import { eventRow } from './events';
import { byNumberDesc } from './paging';
import { UUID } from '../core/ids';
import { Coalescer } from './coalescer';
import { namedStatement, runNamed } from './prepared';

const TARGET_COLUMNS = DEVICE_FACTS.map((c) => `d.${c}`).join(', ');

/**
 * The hand-out rule, as SQL: the enrollment's next commands by priority then arrival, queued ones and
 * (unless skipped) NotNow'd ones, not expired, locked with SKIP LOCKED so concurrent polls never get
 * the same row, marked sent. `enrollment`, `skipNotNow` and `limit` are SQL expressions (parameters or
 * subqueries), so a protocol can fold the hand-out into its own statement (storage/apple.ts).
 */
export function takeNextSql(enrollment: string, skipNotNow: string, limit: string): string {
  return markSentSql(pickSql(enrollment, skipNotNow, limit));
}

/** The rows a hand-out takes, locked (SKIP LOCKED): see takeNextSql. */
function pickSql(enrollment: string, skipNotNow: string, limit: string): string {
  return `SELECT ctid FROM commands
           WHERE enrollment_id = ${enrollment}
             AND (status = 'queued' OR (status = 'not_now' AND NOT ${skipNotNow}))
             AND (expires_at IS NULL OR expires_at > now())
           ORDER BY priority DESC, seq
           LIMIT ${limit}
           FOR UPDATE SKIP LOCKED`;
}

function markSentSql(pick: string): string {
  return `
  UPDATE commands c
     SET status = 'sent', sent_at = now(), attempts = c.attempts + 1
    FROM (${pick}) pick
   WHERE c.ctid = pick.ctid -- the row just locked, without a second index lookup
   RETURNING c.id, c.seq, c.device_id, c.enrollment_id, c.platform, c.type, c.params, c.payload, c.status, c.priority, c.attempts, c.not_now_count, c.expires_at`;
}

/** The next commands of many enrollments ($1 their ids, $2 skip-NotNow and $3 how many, per id), in one statement. */
const TAKE_NEXT_EACH = markSentSql(`
  SELECT taken.ctid FROM unnest($1::uuid[], $2::bool[], $3::int[]) AS want(enrollment_id, skip_not_now, take)
   CROSS JOIN LATERAL (${pickSql('want.enrollment_id', 'want.skip_not_now', 'want.take')}) taken`);

/**
 * Reports of many commands in one statement, each with its event (command ids, the reporting
 * enrollments, statuses, results and errors, one array each). Only a command that is sent (or
 * not_now, for a late final answer) on the reporting enrollment changes; anything else, a repeat
 * included, is a no-op.
 * A NotNow is news only for a command the device was just handed. A final answer also closes a
 * not_now one, and one put back in the queue for redelivery that the device did run after all.
 */
const APPLY_REPORTS = namedStatement('mooring_apply_reports', `
  WITH report AS (
    SELECT * FROM unnest(:ids::uuid[], :enrollments::uuid[], :statuses::text[], :results::jsonb[], :errors::jsonb[]) AS r(id, enrollment_id, status, result, error)
  ), changed AS (
    UPDATE commands c
       SET status = r.status,
           not_now_count = c.not_now_count + (r.status = 'not_now')::int,
           not_now_at = CASE WHEN r.status = 'not_now' THEN coalesce(c.not_now_at, now()) ELSE c.not_now_at END,
           result = CASE WHEN r.status = 'not_now' THEN c.result ELSE r.result END,
           error = CASE WHEN r.status = 'not_now' THEN c.error ELSE r.error END,
           completed_at = CASE WHEN r.status = 'not_now' THEN c.completed_at ELSE now() END
      FROM report r
     WHERE c.id = r.id AND c.enrollment_id = r.enrollment_id
       AND CASE WHEN r.status = 'not_now' THEN c.status = 'sent'
                ELSE c.status IN ('sent', 'not_now') OR (c.status = 'queued' AND c.sent_at IS NOT NULL) END
    RETURNING c.*
  ), ev AS (
    INSERT INTO events (type, device_id, command_id, data)
    SELECT 'command.' || status, device_id, id, jsonb_build_object('type', type) FROM changed
  )
  SELECT * FROM changed`);

/**
 * Reports in flight at once; more wait and leave as one statement. Reports are durable (their commit
 * waits for the WAL flush), so while one flush is under way the next batch gathers: one flush for many.
 */
const REPORT_COALESCING = { maxInFlight: 2, maxBatch: 256 };

/**
 * Hand-out statements in flight on the hand-out pool at once; more wait and leave as one statement.
 * Two measured best on the 2-core bench host (69-75% of SELECT 1 in quick runs, against 65% with
 * four or eight): fewer, larger statements spend less on commits and round trips, and each enrollment
 * in a batch is still one index probe and one row update.
 */
const HANDOUT_COALESCING = { maxInFlight: 2, maxBatch: 256 };

/** The batch row, as a CTE of the first chunk's statement (its bindings: id, type, params, key, requested_by). */
const CLAIM_BATCH = `batch AS (INSERT INTO command_batches (id, type, params, idempotency_key, requested_by) VALUES (?, ?, ?::jsonb, ?, ?))`;

interface ReportAsk {
  enrollmentId: string;
  outcome: CommandOutcome;
}

interface HandoutAsk {
  skipNotNow: boolean;
  limit: number;
}

export class PgCommandStore implements CommandStore {
  /** Concurrent hand-outs (polls of different enrollments) share statements: see Coalescer. */
  private readonly handouts: Coalescer<string, HandoutAsk, Command[]>;
  /** Concurrent reports (of different commands) share statements too. */
  private readonly reports: Coalescer<string, ReportAsk, Command>;

  constructor(
    private readonly db: Db,
    /** Hand-outs run on their own pool: see createHandoutPool. */
    private readonly handout: pg.Pool,
  ) {
    this.handouts = new Coalescer((batch) => this.takeEach(batch), HANDOUT_COALESCING);
    this.reports = new Coalescer((batch) => this.applyEach(batch), REPORT_COALESCING);
  }

  /**
   * Each device with its device-channel enrollment (the newest live one), in one set-based query.
   * Inventory is left out: permission checks never need it, and it is the bulk of a device row.
   */
  async loadTargets(deviceIds: string[]): Promise<Map<string, CommandTarget>> {
    const ids = deviceIds.filter((id) => UUID.test(id));
    const out = new Map<string, CommandTarget>();
    if (ids.length === 0) return out;
    // The ids travel as one comma-joined text (no per-element escaping); they were checked above.
    const { rows } = await this.db.raw<{ rows: Array<DeviceFacts & { enrollment_id: string | null }> }>(
      `SELECT DISTINCT ON (d.id) ${TARGET_COLUMNS}, e.id AS enrollment_id
         FROM devices d
         LEFT JOIN enrollments e
           ON e.device_id = d.id AND e.channel_type = 'device' AND e.status <> 'unenrolled'
        WHERE d.id = ANY(string_to_array(?, ',')::uuid[])
        ORDER BY d.id, e.created_at DESC`,
      [ids.join(',')],
    );
    for (const row of rows) out.set(row.id, { device: row, enrollmentId: row.enrollment_id });
    return out;
  }

  async insertOne(command: NewCommand, event: EventInput): Promise<Command> {
    return this.db.transaction(async (trx) => {
      const [row] = await trx<Command>('commands').insert(toRow(command)).returning('*');
      await trx('events').insert(eventRow(event));
      return row as Command;
    });
  }

  async writeBatchChunk(batch: NewBatch, chunk: NewCommand[], opts: { first: boolean }): Promise<SeqRange | null> {
    // The batch row goes in with the first chunk: it claims the idempotency key (a concurrent request
    // with the same key fails here, before it has written anything) and has no answer yet.
    const claimValues = opts.first ? [batch.id, batch.type, JSON.stringify(batch.params), batch.idempotency_key, batch.requested_by] : [];
    if (chunk.length === 0) {
      if (opts.first) await this.db.raw(`WITH ${CLAIM_BATCH} SELECT 1`, claimValues as never);
      return null;
    }
    // One statement, so one round trip and atomic by itself: during a large lock the event loop is
    // busy with the pushes of earlier chunks, and every round trip of the writer waits its turn there.
    // Per-row values travel as one JSON document (JSON.stringify is native; driver-side array
    // escaping of 100,000 elements is not); values shared by the batch are plain parameters, and
    // payloads that differ only by their command id travel once, as a template Postgres fills in.
    const { rows, templates } = templated(chunk);
    const { rows: written } = await this.db.raw(
      `WITH ${opts.first ? `${CLAIM_BATCH},` : ''}
       tpl AS (SELECT ordinality - 1 AS n, value FROM json_array_elements_text(?::json) WITH ORDINALITY),
       ins AS (
         INSERT INTO commands (id, device_id, enrollment_id, platform, payload, effect,
                               type, params, priority, batch_id, requested_by, expires_at)
         SELECT u.i, u.d, u.e, u.p, coalesce(u.w, replace(tpl.value, ?, u.i::text)), u.f, ?, ?::jsonb, ?, ?, ?, ?
           FROM json_to_recordset(?::json) AS u(i uuid, d uuid, e uuid, p text, w text, t int, f text)
           LEFT JOIN tpl ON tpl.n = u.t
         RETURNING seq)
       SELECT min(seq)::text AS first, max(seq)::text AS last FROM ins`,
      [
        ...claimValues,
        JSON.stringify(templates),
        ID_MARK,
        batch.type,
        JSON.stringify(batch.params),
        chunk[0]!.priority,
        batch.id,
        batch.requested_by,
        chunk[0]!.expires_at,
        JSON.stringify(rows),
      ] as never,
    );
    return { first: written[0].first, last: written[0].last };
  }

  /** The answer, stored for replay, and the batch's event: one statement. */
  async finishBatch(batchId: string, response: BulkResult, event: EventInput): Promise<void> {
    const e = eventRow(event);
    await this.db.raw(
      `WITH answered AS (UPDATE command_batches SET accepted = ?, rejected = ?, response = ?::jsonb WHERE id = ?)
       INSERT INTO events (type, device_id, command_id, actor, data) VALUES (?, ?, ?, ?, ?::jsonb)`,
      [response.accepted.length, response.rejected.length, JSON.stringify(response), batchId, e.type, e.device_id, e.command_id, e.actor, e.data] as never,
    );
  }

  async abandonBatch(batchId: string, event: EventInput): Promise<{ canceled: number; handedOut: number }> {
    return this.db.transaction(async (trx) => {
      const canceled = await cancelOpenCommands(trx, { batch_id: batchId }, event.actor ?? 'system:bulk-request', WAITING);
      const [{ n }] = await trx('commands').where({ batch_id: batchId }).whereNot({ status: 'canceled' }).count<{ n: string }[]>('* as n');
      const handedOut = Number(n);
      // The key is freed, so the request can be sent again as it was; the row stays for the audit trail.
      await trx('command_batches').where({ id: batchId }).update({ idempotency_key: null });
      await trx('events').insert(eventRow({ ...event, data: { ...event.data, batch_id: batchId, canceled, handed_out: handedOut } }));
      return { canceled, handedOut };
    });
  }

  async findByIdempotencyKey(deviceId: string, key: string): Promise<Command | undefined> {
    return this.db<Command>('commands').where({ device_id: deviceId, idempotency_key: key }).first();
  }

  async findBatch(idempotencyKey: string): Promise<BatchRecord | undefined> {
    const row = await this.db('command_batches').where({ idempotency_key: idempotencyKey }).first('id', 'response', 'created_at');
    return row && { id: row.id, response: (row.response as BulkResult | null) ?? null, created_at: row.created_at };
  }

  async get(id: string): Promise<Command | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db<Command>('commands').where({ id }).first();
  }

  async listForDevice(deviceId: string, page: PageRequest): Promise<Page<Command>> {
    return byNumberDesc<Command>(this.db('commands').where({ device_id: deviceId }), 'seq', page, (c) => c.seq);
  }

  /**
   * Takes the enrollment's next `limit` deliverable commands, by priority then arrival, and marks them
   * sent, in a statement shared with concurrent polls of other enrollments (TAKE_NEXT_EACH). SKIP LOCKED
   * lets concurrent polls (other nodes, a retrying device) each take a different command instead of
   * waiting, so no command is handed out twice.
   * Deliverable: queued, or not_now unless the device just said NotNow; never past `expires_at`.
   */
  async takeNext(enrollmentId: string, opts: { skipNotNow: boolean; limit?: number }): Promise<Command[]> {
    if (!UUID.test(enrollmentId)) return []; // no such enrollment, and it must not fail the statement it would share
    // Keyed as Postgres writes a uuid (lowercase), so the rows the statement returns find their caller.
    const key = enrollmentId.toLowerCase();
    return (await this.handouts.request(key, { skipNotNow: opts.skipNotNow, limit: opts.limit ?? 1 })) ?? [];
  }

  /** The next commands of each enrollment of the batch (a batch names an enrollment once), by priority then arrival. */
  private async takeEach(batch: ReadonlyArray<{ key: string; input: HandoutAsk }>): Promise<Map<string, Command[]>> {
    const values = [batch.map((b) => b.key), batch.map((b) => b.input.skipNotNow), batch.map((b) => b.input.limit)];
    const { rows } = await this.handout.query<Command>({ name: 'mooring_take_next_each', text: TAKE_NEXT_EACH, values });
    const out = new Map<string, Command[]>();
    for (const c of rows) {
      const list = out.get(c.enrollment_id);
      if (list) list.push(c);
      else out.set(c.enrollment_id, [c]);
    }
    for (const list of out.values()) if (list.length > 1) list.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    return out;
  }

  /**
   * Applies a report with its event, in a statement shared with concurrent reports (APPLY_REPORTS
   * says which reports change a command). A report that changed nothing answers with the command as it is.
   */
  async applyOutcome(enrollmentId: string, commandId: string, outcome: CommandOutcome): Promise<ReportResult> {
    if (!UUID.test(commandId) || !UUID.test(enrollmentId)) return { changed: false, command: undefined };
    // A device may echo the id in another case; the statement returns it lowercase, and answers by it.
    const changed = await this.reports.request(commandId.toLowerCase(), { enrollmentId, outcome });
    if (changed) return { changed: true, command: changed };
    const current = await this.db<Command>('commands').where({ id: commandId, enrollment_id: enrollmentId }).first();
    return { changed: false, command: current };
  }

  /** Applies the reports of a batch (a batch names a command once) in one statement with their events. */
  private async applyEach(batch: ReadonlyArray<{ key: string; input: ReportAsk }>): Promise<Map<string, Command>> {
    const outcomes = batch.map((b) => b.input.outcome);
    const rows = await runNamed<Command>(this.db, APPLY_REPORTS, {
      ids: batch.map((b) => b.key),
      enrollments: batch.map((b) => b.input.enrollmentId),
      statuses: outcomes.map((o) => o.status),
      results: outcomes.map((o) => (o.status === 'not_now' ? null : json(o.result))),
      errors: outcomes.map((o) => (o.status === 'error' ? json(o.error) : null)),
    });
    return new Map(rows.map((c) => [c.id, c]));
  }

  async cancel(id: string, actor: string | null): Promise<{ command: Command | undefined; canceled: boolean }> {
    if (!UUID.test(id)) return { command: undefined, canceled: false };
    const { rows } = await this.db.raw<{ rows: Command[] }>(
      `WITH changed AS (
         UPDATE commands SET status = 'canceled', canceled_at = now()
          WHERE id = ? AND status IN ('queued', 'not_now')
          RETURNING *
       ), ev AS (
         INSERT INTO events (type, device_id, command_id, actor, data)
         SELECT 'command.canceled', device_id, id, ?, jsonb_build_object('type', type) FROM changed
       )
       SELECT * FROM changed`,
      [id, actor],
    );
    if (rows[0]) return { command: rows[0], canceled: true };
    return { command: await this.get(id), canceled: false };
  }

  /** Puts commands sent before `before` and never reported back in the queue; returns their enrollments. */
  async requeueUnreported(before: Date, limit: number): Promise<string[]> {
    const { rows } = await this.db.raw<{ rows: Array<{ enrollment_id: string }> }>(
      `WITH stale AS (
         SELECT id FROM commands WHERE status = 'sent' AND sent_at < ? LIMIT ? FOR UPDATE SKIP LOCKED
       )
       UPDATE commands c SET status = 'queued' FROM stale WHERE c.id = stale.id
       RETURNING c.enrollment_id`,
      [before, limit],
    );
    return rows.map((r) => r.enrollment_id);
  }

  async expireDue(limit: number): Promise<number> {
    const { rows } = await this.db.raw<{ rows: Array<{ n: number }> }>(
      `WITH due AS (
         SELECT id FROM commands
          WHERE status IN ('queued', 'not_now') AND expires_at <= now()
          LIMIT ? FOR UPDATE SKIP LOCKED
       ), changed AS (
         UPDATE commands c SET status = 'expired', expired_at = now()
           FROM due WHERE c.id = due.id
          RETURNING c.id, c.device_id, c.type
       ), ev AS (
         INSERT INTO events (type, device_id, command_id, data)
         SELECT 'command.expired', device_id, id, jsonb_build_object('type', type) FROM changed
       )
       SELECT count(*)::int AS n FROM changed`,
      [limit],
    );
    return rows[0]?.n ?? 0;
  }
}

function toRow(c: NewCommand): Record<string, unknown> {
  return { ...c, params: JSON.stringify(c.params) };
}

function json(value: unknown): string | null {
  return value === undefined ? null : JSON.stringify(value);
}

/** Commands no device has been handed (or has put off): what a failed bulk request takes back. */
const WAITING = ['queued', 'not_now'] as const;
/** Commands not finished: what a re-enrolled or departed device leaves behind. */
const OPEN = ['queued', 'sent', 'not_now'] as const;

/**
 * Cancels the commands of a device, one of its channels or a bulk batch that are in `statuses` (by
 * default every open one), with an event each: a re-enrolled or departed device starts clean, and a
 * wipe queued before a reset never runs again. Returns how many it canceled.
 */
export async function cancelOpenCommands(
  conn: Db,
  scope: { device_id: string } | { enrollment_id: string } | { batch_id: string },
  actor: string,
  statuses: ReadonlyArray<(typeof OPEN)[number]> = OPEN,
): Promise<number> {
  const [column, id] = Object.entries(scope)[0]!;
  const { rowCount } = await conn.raw(
    `WITH changed AS (
       UPDATE commands SET status = 'canceled', canceled_at = now()
        WHERE ${column} = ? AND status = ANY(?) RETURNING id, device_id, type
     )
     INSERT INTO events (type, device_id, command_id, actor, data)
     SELECT 'command.canceled', device_id, id, ?, jsonb_build_object('type', type) FROM changed`,
    [id, statuses as unknown as string[], actor],
  );
  return rowCount ?? 0;
}

/** Stands for the command id in a payload template (a control character: never in a plist or SyncML). */
const ID_MARK = '\u0001id\u0001';

/**
 * Each row for the bulk insert, with its payload replaced by a template index when the payload holds
 * its own command id exactly once (a bulk command builds the same document for every device but the
 * id): 10,000 identical plists then travel as one. Other payloads travel as they are.
 */
function templated(chunk: NewCommand[]): { rows: object[]; templates: string[] } {
  const templates: string[] = [];
  const index = new Map<string, number>();
  const rows = chunk.map((c) => {
    const base = { i: c.id, d: c.device_id, e: c.enrollment_id, p: c.platform, f: c.effect };
    const at = c.payload.indexOf(c.id);
    // Postgres writes a uuid in lowercase: only such ids can be put back by it.
    if (at < 0 || c.id !== c.id.toLowerCase() || c.payload.includes(c.id, at + 1) || c.payload.includes(ID_MARK)) return { ...base, w: c.payload };
    const template = c.payload.slice(0, at) + ID_MARK + c.payload.slice(at + c.id.length);
    let t = index.get(template);
    if (t === undefined) {
      t = templates.length;
      templates.push(template);
      index.set(template, t);
    }
    return { ...base, t };
  });
  return { rows, templates };
}
