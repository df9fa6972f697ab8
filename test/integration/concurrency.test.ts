/**
 * Two Mooring instances on one database (as behind a load balancer), with many parallel polls for the
 * same enrollment: every command is handed out exactly once and in order, and a report repeated on
 * both instances changes the command once.
 */
import { startTestServer, type TestServer } from '../helpers/server';

let a: TestServer;
let b: TestServer & { database: { url: string; drop(): Promise<void> } };

beforeAll(async () => {
  const first = await startTestServer();
  b = first;
  a = await startTestServer({ database: first.database, queueNamespace: first.queueNamespace });
});
afterAll(async () => {
  await a.stop();
  await b.stop();
});

it('hands each command out exactly once, in order, across instances and parallel polls', async () => {
  const { device, enrollment } = await a.device();
  const COMMANDS = 200;
  const ids: string[] = [];
  for (let i = 0; i < COMMANDS; i++) ids.push((await (i % 2 ? a : b).m.commands.enqueue(device.id, { type: 'device_info' }, 'test')).command.id);

  const POLLERS = 24;
  const received = await Promise.all(
    Array.from({ length: POLLERS }, async (_, p) => {
      const node = p % 2 ? a : b;
      const got: Array<{ id: string; seq: number }> = [];
      for (let c = await node.m.commands.next(enrollment.id); c; c = await node.m.commands.next(enrollment.id)) got.push({ id: c.id, seq: c.seq });
      return got;
    }),
  );

  const all = received.flat();
  expect(all).toHaveLength(COMMANDS);
  expect(new Set(all.map((c) => c.id))).toEqual(new Set(ids));
  for (const got of received) {
    const seqs = got.map((c) => c.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y)); // each poller sees the queue in order
  }
  const sentOrder = await a.m.db('commands').where({ enrollment_id: enrollment.id }).orderBy([{ column: 'sent_at' }, { column: 'seq' }]).select('seq', 'attempts');
  expect(sentOrder.every((r: { attempts: number }) => r.attempts === 1)).toBe(true);
});

it('applies a report repeated on both instances once', async () => {
  const { device, enrollment } = await a.device();
  const ids: string[] = [];
  for (let i = 0; i < 40; i++) ids.push((await a.m.commands.enqueue(device.id, { type: 'lock' }, 'test')).command.id);
  while (await b.m.commands.next(enrollment.id));

  const results = await Promise.all(
    ids.flatMap((id) => [a, b, a, b].map((node) => node.m.commands.report(enrollment.id, id, { status: 'acknowledged', result: { via: 'test' } }))),
  );
  expect(results.filter((r) => r.changed)).toHaveLength(ids.length);
  const events = await a.m.db('events').where({ device_id: device.id, type: 'command.acknowledged' }).count('* as n').first();
  expect(Number(events?.n)).toBe(ids.length);
  const statuses = await a.m.db('commands').whereIn('id', ids).distinct('status');
  expect(statuses).toEqual([{ status: 'acknowledged' }]);
});
