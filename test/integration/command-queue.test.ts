/**
 * The shared command queue against real Postgres: ordering, NotNow, idempotent reports, cancel,
 * expiry, redelivery and idempotency keys, driven through CommandService as the front ends will.
 */
import type pg from 'pg';
import { CommandService, type PushScheduler, type SeqRange } from '../../src/core/commands';
import { PlatformRegistry, type CommandOutcome } from '../../src/core/platforms';
import type { Command } from '../../src/core/types';
import { createHandoutPool } from '../../src/storage/db';
import { PgCommandStore } from '../../src/storage/commands';
import { startTestServer, type TestServer } from '../helpers/server';
import { TestPlatformCommands } from '../helpers/test-platform';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.stop());

const enqueue = (deviceId: string, type: string, extra: Record<string, unknown> = {}) =>
  s.m.commands.enqueue(deviceId, { type, ...extra }, 'test').then((r) => r.command);

describe('next command', () => {
  it('hands commands out by priority, then in arrival order, each once', async () => {
    const { device, enrollment } = await s.device();
    const a = await enqueue(device.id, 'device_info');
    const b = await enqueue(device.id, 'restart');
    const urgent = await enqueue(device.id, 'lock', { priority: 10 });
    const order: string[] = [];
    for (let next = await s.m.commands.next(enrollment.id); next; next = await s.m.commands.next(enrollment.id)) order.push(next.id);
    expect(order).toEqual([urgent.id, a.id, b.id]);
    expect((await s.m.commands.get(a.id)).status).toBe('sent');
    expect((await s.m.commands.get(a.id)).attempts).toBe(1);
  });

  it('never hands one enrollment another enrollment\'s commands', async () => {
    const one = await s.device();
    const two = await s.device();
    await enqueue(one.device.id, 'lock');
    expect(await s.m.commands.next(two.enrollment.id)).toBeUndefined();
    expect((await s.m.commands.next(one.enrollment.id))?.device_id).toBe(one.device.id);
  });

  it('does not deliver an expired command, and the sweep marks it expired', async () => {
    const { device, enrollment } = await s.device();
    const c = await enqueue(device.id, 'lock');
    await s.m.db('commands').where({ id: c.id }).update({ expires_at: new Date(Date.now() - 1000) });
    expect(await s.m.commands.next(enrollment.id)).toBeUndefined();
    expect(await s.m.commands.expireDue()).toBeGreaterThanOrEqual(1);
    const after = await s.m.commands.get(c.id);
    expect(after.status).toBe('expired');
    expect(after.expired_at).not.toBeNull();
    const events = await s.m.events.list({ device_id: device.id, type: 'command.expired' }, { limit: 10 });
    expect(events.items.map((e) => e.command_id)).toContain(c.id);
  });

  it('hands a sent but unreported command out again after the redelivery window', async () => {
    const { device, enrollment } = await s.device();
    const c = await enqueue(device.id, 'lock');
    const fresh = await enqueue(device.id, 'restart');
    expect((await s.m.commands.next(enrollment.id))?.id).toBe(c.id);
    expect((await s.m.commands.next(enrollment.id))?.id).toBe(fresh.id);
    expect(await s.m.commands.next(enrollment.id)).toBeUndefined();
    await s.m.db('commands').where({ id: c.id }).update({ sent_at: new Date(Date.now() - (s.config.redeliverAfterSeconds + 5) * 1000) });
    expect(await s.m.commands.requeueUnreported()).toBeGreaterThanOrEqual(1);
    expect((await s.m.commands.get(fresh.id)).status).toBe('sent'); // still inside its window
    const again = await s.m.commands.next(enrollment.id);
    expect(again?.id).toBe(c.id);
    expect(again?.attempts).toBe(2);
  });
});

describe('reports', () => {
  it('records an acknowledgement once; a repeat changes nothing', async () => {
    const { device, enrollment } = await s.device();
    const c = await enqueue(device.id, 'device_info');
    await s.m.commands.next(enrollment.id);
    const first = await s.m.commands.report(enrollment.id, c.id, { status: 'acknowledged', result: { battery: 0.5 } });
    expect(first.changed).toBe(true);
    expect(first.command?.status).toBe('acknowledged');
    const repeat = await s.m.commands.report(enrollment.id, c.id, { status: 'error', error: 'late' });
    expect(repeat.changed).toBe(false);
    const stored = await s.m.commands.get(c.id);
    expect(stored.status).toBe('acknowledged');
    expect(stored.result).toEqual({ battery: 0.5 });
    expect(stored.error).toBeNull();
    const events = await s.m.events.list({ device_id: device.id, type: 'command.acknowledged' }, { limit: 10 });
    expect(events.items).toHaveLength(1);
  });

  it('takes a late answer for a command already put back for redelivery', async () => {
    const { device, enrollment } = await s.device();
    const c = await enqueue(device.id, 'device_info');
    await s.m.commands.next(enrollment.id);
    await s.m.db('commands').where({ id: c.id }).update({ sent_at: new Date(Date.now() - (s.config.redeliverAfterSeconds + 5) * 1000) });
    await s.m.commands.requeueUnreported();
    const late = await s.m.commands.report(enrollment.id, c.id, { status: 'acknowledged', result: { late: true } });
    expect(late.changed).toBe(true);
    expect(await s.m.commands.next(enrollment.id)).toBeUndefined();
  });

  it('ignores a report from an enrollment the command does not belong to', async () => {
    const owner = await s.device();
    const other = await s.device();
    const c = await enqueue(owner.device.id, 'lock');
    await s.m.commands.next(owner.enrollment.id);
    const r = await s.m.commands.report(other.enrollment.id, c.id, { status: 'acknowledged' });
    expect(r).toEqual({ changed: false, command: undefined });
    expect((await s.m.commands.get(c.id)).status).toBe('sent');
  });

  it('keeps a NotNow command, hands out the next other one, and returns it at the next idle poll', async () => {
    const { device, enrollment } = await s.device();
    const first = await enqueue(device.id, 'device_info');
    const second = await enqueue(device.id, 'restart');
    expect((await s.m.commands.next(enrollment.id))?.id).toBe(first.id);
    const notNow = await s.m.commands.report(enrollment.id, first.id, { status: 'not_now' });
    expect(notNow.changed).toBe(true);
    expect(notNow.command?.status).toBe('not_now');
    // Right after NotNow the device gets the next other command...
    expect((await s.m.commands.next(enrollment.id, { skipNotNow: true }))?.id).toBe(second.id);
    await s.m.commands.report(enrollment.id, second.id, { status: 'acknowledged' });
    expect(await s.m.commands.next(enrollment.id, { skipNotNow: true })).toBeUndefined();
    // ...and the NotNow'd one comes back when it is idle again.
    const back = await s.m.commands.next(enrollment.id);
    expect(back?.id).toBe(first.id);
    expect(back?.not_now_count).toBe(1);
    await s.m.commands.report(enrollment.id, first.id, { status: 'acknowledged' });
    expect((await s.m.commands.get(first.id)).status).toBe('acknowledged');
  });
});

describe('polls at the same moment (one statement for many enrollments)', () => {
  it('gives each enrollment its own commands, by priority, each once, even when it polls several times at once', async () => {
    const fleet = await Promise.all(Array.from({ length: 12 }, () => s.device()));
    const queued = new Map<string, string[]>();
    for (const { device, enrollment } of fleet) {
      const plain = await enqueue(device.id, 'device_info');
      const later = await enqueue(device.id, 'restart');
      const urgent = await enqueue(device.id, 'lock', { priority: 10 });
      queued.set(enrollment.id, [urgent.id, plain.id, later.id]);
    }
    // First round: every enrollment once, all in the same turn: each gets its urgent command.
    const first = await Promise.all(fleet.map(({ enrollment }) => s.m.commands.next(enrollment.id)));
    fleet.forEach(({ enrollment }, i) => expect(first[i]?.id).toBe(queued.get(enrollment.id)![0]));
    // Second round: every enrollment three times at once, for its two remaining commands.
    const asks = fleet.flatMap(({ enrollment }) => [enrollment.id, enrollment.id, enrollment.id]);
    const second = await Promise.all(asks.map((id) => s.m.commands.next(id)));
    for (const { enrollment } of fleet) {
      const got = second.filter((c, i) => asks[i] === enrollment.id && c !== undefined);
      expect(got.map((c) => c!.enrollment_id)).toEqual([enrollment.id, enrollment.id]);
      expect(got.map((c) => c!.id).sort()).toEqual(queued.get(enrollment.id)!.slice(1).sort());
    }
    expect(second.filter((c) => c === undefined)).toHaveLength(fleet.length);
  });

  it('applies each poll\'s own NotNow rule inside a shared statement', async () => {
    const a = await s.device();
    const b = await s.device();
    const aHeld = await enqueue(a.device.id, 'device_info');
    const aNext = await enqueue(a.device.id, 'restart');
    const bHeld = await enqueue(b.device.id, 'device_info');
    for (const [who, held] of [[a, aHeld], [b, bHeld]] as const) {
      expect((await s.m.commands.next(who.enrollment.id))?.id).toBe(held.id);
      await s.m.commands.report(who.enrollment.id, held.id, { status: 'not_now' });
    }
    const [forA, forB] = await Promise.all([
      s.m.commands.next(a.enrollment.id, { skipNotNow: true }), // just said NotNow: the next other command
      s.m.commands.next(b.enrollment.id), // idle again: the NotNow'd command comes back
    ]);
    expect(forA?.id).toBe(aNext.id);
    expect(forB?.id).toBe(bHeld.id);
  });

  it('serves a poll that takes a list (Windows, Android) and one that takes one command in the same statement', async () => {
    const many = await s.device();
    const one = await s.device();
    const listed = [await enqueue(many.device.id, 'device_info'), await enqueue(many.device.id, 'restart'), await enqueue(many.device.id, 'lock', { priority: 10 })];
    const single = [await enqueue(one.device.id, 'device_info'), await enqueue(one.device.id, 'restart')];
    const [list, first] = await Promise.all([s.m.commands.nextMany(many.enrollment.id, 2), s.m.commands.next(one.enrollment.id)]);
    expect(list.map((c) => c.id)).toEqual([listed[2]!.id, listed[0]!.id]);
    expect(first?.id).toBe(single[0]!.id);
    expect((await s.m.commands.nextMany(many.enrollment.id, 5)).map((c) => c.id)).toEqual([listed[1]!.id]);
  });

  it('answers a malformed enrollment id with nothing, without failing the polls it shares a statement with', async () => {
    const { device, enrollment } = await s.device();
    const c = await enqueue(device.id, 'lock');
    const [bad, good] = await Promise.all([s.m.commands.next('not-a-uuid'), s.m.commands.next(enrollment.id)]);
    expect(bad).toBeUndefined();
    expect(good?.id).toBe(c.id);
  });
});

describe('reports at the same moment (one statement for many commands)', () => {
  it('applies each report as if it came alone: its own status, result, error and event', async () => {
    const fleet = await Promise.all(Array.from({ length: 6 }, () => s.device()));
    const sent: Command[] = [];
    for (const { device, enrollment } of fleet) {
      await enqueue(device.id, 'device_info');
      sent.push((await s.m.commands.next(enrollment.id))!);
    }
    const odd = { chain: [{ code: 12021, text: 'quote " backslash \\ brace { unicode é 日本' }] };
    const outcomes: CommandOutcome[] = [
      { status: 'acknowledged', result: { serial: 'C02X', list: [1, 'two', null] } },
      { status: 'error', error: odd, result: { partial: true } },
      { status: 'not_now' },
      { status: 'acknowledged' },
      { status: 'error', error: 'plain text' },
      { status: 'acknowledged', result: 'a "string" result' },
    ];
    const answers = await Promise.all(fleet.map(({ enrollment }, i) => s.m.commands.report(enrollment.id, sent[i]!.id, outcomes[i]!)));
    expect(answers.every((a) => a.changed)).toBe(true);
    const stored = await Promise.all(sent.map((c) => s.m.commands.get(c.id)));
    expect(stored.map((c) => c.status)).toEqual(['acknowledged', 'error', 'not_now', 'acknowledged', 'error', 'acknowledged']);
    expect(stored[0]!.result).toEqual({ serial: 'C02X', list: [1, 'two', null] });
    expect(stored[1]!.error).toEqual(odd);
    expect(stored[1]!.result).toEqual({ partial: true });
    expect(stored[2]!.not_now_count).toBe(1);
    expect(stored[2]!.completed_at).toBeNull();
    expect(stored[3]!.result).toBeNull();
    expect(stored[4]!.error).toBe('plain text');
    expect(stored[5]!.result).toBe('a "string" result');
    for (const [i, { device }] of fleet.entries()) {
      const events = await s.m.events.list({ device_id: device.id, type: `command.${stored[i]!.status}` }, { limit: 10 });
      expect(events.items.map((e) => e.command_id)).toEqual([sent[i]!.id]);
    }
  });

  it('takes a report whose command id the device echoed in upper case, and an enrollment id given so', async () => {
    const { device, enrollment } = await s.device();
    await enqueue(device.id, 'restart');
    const c = (await s.m.commands.next(enrollment.id.toUpperCase()))!;
    expect(c.device_id).toBe(device.id);
    const r = await s.m.commands.report(enrollment.id, c.id.toUpperCase(), { status: 'not_now' });
    expect(r.changed).toBe(true);
    expect(r.command?.status).toBe('not_now');
  });

  it('changes a command once when it is reported twice at once, and never for another enrollment', async () => {
    const mine = await s.device();
    const other = await s.device();
    await enqueue(mine.device.id, 'lock');
    const c = (await s.m.commands.next(mine.enrollment.id))!;
    const [stranger, first, second] = await Promise.all([
      s.m.commands.report(other.enrollment.id, c.id, { status: 'error', error: 'not yours' }),
      s.m.commands.report(mine.enrollment.id, c.id, { status: 'acknowledged' }),
      s.m.commands.report(mine.enrollment.id, c.id, { status: 'acknowledged' }),
    ]);
    expect(stranger.changed).toBe(false);
    expect([first.changed, second.changed].filter(Boolean)).toHaveLength(1);
    expect((await s.m.commands.get(c.id)).status).toBe('acknowledged');
    const events = await s.m.events.list({ device_id: mine.device.id, type: 'command.acknowledged' }, { limit: 10 });
    expect(events.items).toHaveLength(1);
  });
});

describe('cancel', () => {
  it('cancels a queued command and refuses once it was sent', async () => {
    const { device, enrollment } = await s.device();
    const queued = await enqueue(device.id, 'lock');
    expect((await s.m.commands.cancel(queued.id, 'test')).status).toBe('canceled');
    expect(await s.m.commands.next(enrollment.id)).toBeUndefined();
    const sent = await enqueue(device.id, 'lock');
    await s.m.commands.next(enrollment.id);
    await expect(s.m.commands.cancel(sent.id, 'test')).rejects.toMatchObject({ code: 'command_not_cancelable', status: 409 });
  });
});

describe('idempotency keys', () => {
  it('returns the first command for a repeated key and refuses the key for a different command', async () => {
    const { device } = await s.device();
    const one = await s.m.commands.enqueue(device.id, { type: 'lock', params: { message: 'hi', pin: '1' }, idempotency_key: 'k1' }, 'test');
    const two = await s.m.commands.enqueue(device.id, { type: 'lock', params: { pin: '1', message: 'hi' }, idempotency_key: 'k1' }, 'test');
    expect(one.created).toBe(true);
    expect(two.created).toBe(false);
    expect(two.command.id).toBe(one.command.id);
    await expect(s.m.commands.enqueue(device.id, { type: 'restart', idempotency_key: 'k1' }, 'test')).rejects.toMatchObject({ code: 'idempotency_conflict' });
    const { count } = (await s.m.db('commands').where({ device_id: device.id }).count('* as count').first()) as { count: string };
    expect(Number(count)).toBe(1);
  });

  it('answers concurrent requests with one key with one command', async () => {
    const { device } = await s.device();
    const results = await Promise.all(Array.from({ length: 8 }, () => s.m.commands.enqueue(device.id, { type: 'lock', idempotency_key: 'race' }, 'test')));
    expect(new Set(results.map((r) => r.command.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
  });
});

describe('bulk', () => {
  it('queues for the known devices and reports the rest, all in one batch', async () => {
    const a = await s.device();
    const b = await s.device({ ownership: 'personal' });
    const gone = await s.device({ status: 'unenrolled' });
    const missing = '00000000-0000-4000-8000-000000000000';
    const result = await s.m.commands.enqueueBulk([a.device.id, b.device.id, gone.device.id, missing, 'not-a-uuid', a.device.id], { type: 'lost_mode_on' }, 'test');
    expect(result.accepted).toEqual([a.device.id]);
    expect(result.rejected).toEqual([
      expect.objectContaining({ device_id: b.device.id, code: 'command_not_permitted' }),
      expect.objectContaining({ device_id: gone.device.id, code: 'device_not_enrolled' }),
      expect.objectContaining({ device_id: missing, code: 'device_not_found' }),
      expect.objectContaining({ device_id: 'not-a-uuid', code: 'device_not_found' }),
    ]);
    const rows = await s.m.db('commands').where({ batch_id: result.batch_id });
    expect(rows).toHaveLength(1);
    expect(rows[0].device_id).toBe(a.device.id);
  });

  it('stores every payload exactly as built, its own id in place, when payloads travel as templates', async () => {
    const devices = await Promise.all(Array.from({ length: 5 }, () => s.device()));
    const ids = devices.map((d) => d.device.id);
    const same = await s.m.commands.enqueueBulk(ids, { type: 'lock', params: { message: 'same for all: \u00e9 "quoted" <tag>' } }, 'test');
    const rows = await s.m.db('commands').where({ batch_id: same.batch_id }).orderBy('device_id');
    expect(rows).toHaveLength(5);
    for (const row of rows) {
      expect(JSON.parse(row.payload)).toEqual({ command_id: row.id, type: 'lock', params: { message: 'same for all: \u00e9 "quoted" <tag>' } });
    }
    expect(new Set(rows.map((r) => r.payload)).size).toBe(5);
  });

  it('replays the first answer for a repeated idempotency key', async () => {
    const a = await s.device();
    const first = await s.m.commands.enqueueBulk([a.device.id], { type: 'lock', idempotency_key: 'bulk-1' }, 'test');
    const again = await s.m.commands.enqueueBulk([a.device.id], { type: 'lock', idempotency_key: 'bulk-1' }, 'test');
    expect(again).toEqual(first);
    expect(await s.m.db('commands').where({ device_id: a.device.id })).toHaveLength(1);
  });

  it('writes nothing when the transaction fails half way', async () => {
    const a = await s.device();
    const b = await s.device();
    const count = async () => [await s.m.db('commands').count('* as n').first(), await s.m.db('command_batches').count('* as n').first()];
    const before = await count();
    // The database refuses the second device's row after the batch row and the first were written.
    await s.m.db.raw(`CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.device_id = '${b.device.id}' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$`);
    await s.m.db.raw('CREATE TRIGGER refuse_row BEFORE INSERT ON commands FOR EACH ROW EXECUTE FUNCTION refuse_row()');
    try {
      await expect(s.m.commands.enqueueBulk([a.device.id, b.device.id], { type: 'lock' }, 'test')).rejects.toThrow(/disk full/);
    } finally {
      await s.m.db.raw('DROP TRIGGER refuse_row ON commands; DROP FUNCTION refuse_row()');
    }
    expect(await count()).toEqual(before);
  });
});

describe('bulk, a chunk at a time', () => {
  let handout: pg.Pool;
  beforeAll(() => {
    handout = createHandoutPool(s.m.databaseUrl, 2);
  });
  afterAll(() => handout.end());

  /** A CommandService with tiny chunks (2, then 4) whose pusher records what it was asked to wake, and when. */
  function chunkedService(onBatch: (batchId: string, range: SeqRange) => Promise<void> = async () => undefined) {
    const woken: Array<{ batchId: string; range: SeqRange | undefined }> = [];
    const direct: string[][] = [];
    const pusher: PushScheduler = {
      async push(ids) {
        direct.push(ids);
      },
      async pushBatch(batchId, range) {
        woken.push({ batchId, range });
        if (range) await onBatch(batchId, range);
      },
    };
    const service = new CommandService(new PgCommandStore(s.m.db, handout), new PlatformRegistry().register(new TestPlatformCommands('android')), pusher, {
      defaultTtlSeconds: 3600,
      redeliverAfterSeconds: 600,
      notNowRetrySeconds: 60,
      bulkChunks: { first: 2, max: 4 },
    });
    return { service, woken, direct };
  }

  const enrollmentsIn = async (batchId: string, range: SeqRange) =>
    (await s.m.db('commands').where({ batch_id: batchId }).whereBetween('seq', [range.first, range.last]).select('enrollment_id')).map((r) => r.enrollment_id as string);

  it('wakes each chunk once it is committed, every device once, and replays the answer', async () => {
    const targets = await Promise.all(Array.from({ length: 7 }, () => s.device()));
    const seenAtWake: string[][] = [];
    // Read from another connection at wake time: what the pusher is told about is already committed.
    const { service, woken, direct } = chunkedService(async (batchId, range) => void seenAtWake.push(await enrollmentsIn(batchId, range)));
    const result = await service.enqueueBulk(targets.map((t) => t.device.id), { type: 'lock', idempotency_key: 'chunked-1' }, 'test');
    expect(result.accepted).toHaveLength(7);
    expect(direct).toEqual([]);
    expect(woken.map((w) => w.batchId)).toEqual([result.batch_id, result.batch_id, result.batch_id]);
    expect(seenAtWake.map((ids) => ids.length)).toEqual([2, 4, 1]);
    expect(new Set(seenAtWake.flat())).toEqual(new Set(targets.map((t) => t.enrollment.id)));
    const again = await service.enqueueBulk(targets.map((t) => t.device.id), { type: 'lock', idempotency_key: 'chunked-1' }, 'test');
    expect(again).toEqual(result);
    expect(await s.m.db('commands').where({ batch_id: result.batch_id })).toHaveLength(7);
    const events = await s.m.db('events').where({ type: 'commands.queued' }).whereRaw("data->>'batch_id' = ?", [result.batch_id]);
    expect(events).toHaveLength(1);
  });

  it('wakes a request no larger than the first chunk directly, after its one statement', async () => {
    const targets = await Promise.all(Array.from({ length: 2 }, () => s.device()));
    const { service, woken, direct } = chunkedService();
    await service.enqueueBulk(targets.map((t) => t.device.id), { type: 'lock' }, 'test');
    expect(woken).toEqual([]);
    expect(direct).toEqual([targets.map((t) => t.enrollment.id)]);
  });

  it('writes the batch with its answer when every device is refused', async () => {
    const { service, woken, direct } = chunkedService();
    const missing = ['00000000-0000-4000-8000-00000000aaa1', '00000000-0000-4000-8000-00000000aaa2', '00000000-0000-4000-8000-00000000aaa3'];
    const result = await service.enqueueBulk(missing, { type: 'lock', idempotency_key: 'all-refused' }, 'test');
    expect(result.accepted).toEqual([]);
    expect(result.rejected.map((r) => r.code)).toEqual(['device_not_found', 'device_not_found', 'device_not_found']);
    expect(woken).toEqual([]);
    expect(direct).toEqual([]);
    expect(await service.enqueueBulk(missing, { type: 'lock', idempotency_key: 'all-refused' }, 'test')).toEqual(result);
  });

  it('cancels what it queued when a later chunk fails, keeps what a device already took, and can be repeated', async () => {
    const targets = await Promise.all(Array.from({ length: 5 }, () => s.device()));
    const ids = targets.map((t) => t.device.id);
    // The third device's row (in the second chunk) is refused by the database.
    await s.m.db.raw(`CREATE FUNCTION refuse_third() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.device_id = '${ids[2]}' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$`);
    await s.m.db.raw('CREATE TRIGGER refuse_third BEFORE INSERT ON commands FOR EACH ROW EXECUTE FUNCTION refuse_third()');
    // The first device polls as soon as it is woken, before the failure.
    const { service } = chunkedService(async () => void (await service.next(targets[0]!.enrollment.id)));
    try {
      await expect(service.enqueueBulk(ids, { type: 'lock', idempotency_key: 'fails-half-way' }, 'test')).rejects.toThrow(/disk full/);
    } finally {
      await s.m.db.raw('DROP TRIGGER refuse_third ON commands; DROP FUNCTION refuse_third()');
    }
    const failed = await s.m.db('commands').whereIn('device_id', ids).orderBy('seq');
    expect(failed.map((c) => [c.device_id, c.status])).toEqual([
      [ids[0], 'sent'],
      [ids[1], 'canceled'],
    ]);
    const batchId = failed[0].batch_id;
    // The canceled command has its own trail, as any canceled command does.
    const trail = await s.m.db('events').where({ type: 'command.canceled', command_id: failed[1].id });
    expect(trail).toEqual([expect.objectContaining({ device_id: ids[1], actor: 'test' })]);
    const [event] = await s.m.db('events').where({ type: 'commands.batch_failed' }).whereRaw("data->>'batch_id' = ?", [batchId]);
    expect(event.data).toMatchObject({ canceled: 1, handed_out: 1, reason: expect.stringMatching(/disk full/) });
    // The key was freed: the same request, repeated, queues for every device (the first one polls again).
    const retry = await service.enqueueBulk(ids, { type: 'lock', idempotency_key: 'fails-half-way' }, 'test');
    expect(retry.batch_id).not.toBe(batchId);
    const again = await s.m.db('commands').where({ batch_id: retry.batch_id }).orderBy('seq');
    expect(again.map((c) => [c.device_id, c.status])).toEqual(ids.map((id, i) => [id, i === 0 ? 'sent' : 'queued']));
  });

  it('answers 409 while a batch with the same key is being written, and takes one left unfinished for dead', async () => {
    const { device } = await s.device();
    const started = { id: '0190f0f0-0000-7000-8000-000000000001', type: 'lock', idempotency_key: 'in-progress', response: null };
    await s.m.db('command_batches').insert(started);
    const { service } = chunkedService();
    await expect(service.enqueueBulk([device.id], { type: 'lock', idempotency_key: 'in-progress' }, 'test')).rejects.toMatchObject({ code: 'idempotency_conflict', status: 409 });
    await s.m.db('command_batches').where({ id: started.id }).update({ created_at: new Date(Date.now() - 11 * 60_000) });
    const result = await service.enqueueBulk([device.id], { type: 'lock', idempotency_key: 'in-progress' }, 'test');
    expect(result.accepted).toEqual([device.id]);
    expect((await s.m.db('command_batches').where({ id: started.id }).first()).idempotency_key).toBeNull();
  });

  it('queues one batch for concurrent requests with one key', async () => {
    const targets = await Promise.all(Array.from({ length: 5 }, () => s.device()));
    const { service } = chunkedService();
    const outcomes = await Promise.allSettled(
      Array.from({ length: 4 }, () => service.enqueueBulk(targets.map((t) => t.device.id), { type: 'lock', idempotency_key: 'bulk-race' }, 'test')),
    );
    const answers = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toMatchObject({ code: 'idempotency_conflict' });
    expect(answers.length).toBeGreaterThanOrEqual(1);
    expect(new Set(answers.map((a) => a.batch_id)).size).toBe(1);
    expect(await s.m.db('commands').whereIn('device_id', targets.map((t) => t.device.id))).toHaveLength(5);
  });
});
