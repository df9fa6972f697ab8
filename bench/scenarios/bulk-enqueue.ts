/**
 * Bulk enqueue: one `lock` for every device of the fleet, three ways, each on an empty commands table:
 *   floor    the same rows in one raw INSERT ... SELECT FROM unnest(...), arrays built beforehand
 *   service  CommandService.enqueueBulk: target lookup, permission checks, payloads, the batch row with
 *            its replayable response, the audit event, and scheduling the push fan-out
 *   http     POST /api/v1/commands through Express (auth, JSON parsing, zod validation, response)
 * service / floor is what our code adds on top of storing the rows at all.
 */
import crypto from 'node:crypto';
import supertest from 'supertest';
import type { BulkResult } from '../../src/core/commands';
import type { Db } from '../../src/storage/db';
import { recordSteps, type StepTime } from '../lib/breakdown';
import type { BenchRuntime } from '../lib/runtime';
import { progress } from '../lib/log';
import type { Fleet } from '../lib/seed';
import { median, round, timed } from '../lib/stats';

export const BULK_TARGET_SECONDS = 5;

type Variant = 'floor' | 'service' | 'http';

export interface VariantTimes {
  median_seconds: number;
  best_seconds: number;
  samples_seconds: number[];
}

export interface BulkEnqueueResult {
  devices: number;
  repeats: number;
  floor: VariantTimes;
  service: VariantTimes;
  http?: VariantTimes;
  /** Mean per service run: each SQL statement, the push scheduling, and the Node work in between. */
  service_breakdown: StepTime[];
  /** service median / floor median: 1 would mean no overhead at all. */
  service_vs_floor: number;
  http_vs_floor?: number;
  target_seconds: number;
  /** The target is judged on the service path's median. */
  pass: boolean;
}

export async function benchBulkEnqueue(rt: BenchRuntime, fleet: Fleet, opts: { repeats: number; http: boolean }): Promise<BulkEnqueueResult> {
  const variants: Variant[] = opts.http ? ['floor', 'service', 'http'] : ['floor', 'service'];
  const samples: Record<Variant, number[]> = { floor: [], service: [], http: [] };
  const breakdowns: StepTime[][] = [];
  for (let rep = 1; rep <= opts.repeats; rep++) {
    // Interleaved so drift (autovacuum, page cache, WAL recycling) hits every variant alike.
    for (const variant of variants) {
      await resetCommands(rt.m.db);
      const recorder = variant === 'service' ? recordSteps(rt.m.db, rt.m.dispatcher) : undefined;
      const seconds = await runVariant(rt, fleet, variant);
      if (recorder) breakdowns.push(withNodeWork(recorder.stop(), seconds));
      samples[variant].push(seconds);
      progress(`bulk enqueue ${fleet.deviceIds.length} devices, ${variant.padEnd(7)} run ${rep}/${opts.repeats}: ${seconds.toFixed(3)} s`);
    }
  }
  const floor = summarize(samples.floor);
  const service = summarize(samples.service);
  const http = opts.http ? summarize(samples.http) : undefined;
  return {
    devices: fleet.deviceIds.length,
    repeats: opts.repeats,
    floor,
    service,
    http,
    service_breakdown: meanSteps(breakdowns),
    service_vs_floor: round(service.median_seconds / floor.median_seconds, 2),
    http_vs_floor: http && round(http.median_seconds / floor.median_seconds, 2),
    target_seconds: BULK_TARGET_SECONDS,
    pass: service.median_seconds < BULK_TARGET_SECONDS,
  };
}

async function runVariant(rt: BenchRuntime, fleet: Fleet, variant: Variant): Promise<number> {
  switch (variant) {
    case 'floor': {
      const rows = floorRows(fleet); // built outside the timing: the floor is the database's share only
      return (await timed(() => rawInsert(rt.m.db, rows))).seconds;
    }
    case 'service': {
      const { seconds, value } = await timed(() => rt.m.commands.enqueueBulk(fleet.deviceIds, { type: 'lock' }, 'bench'));
      expectAllAccepted(value, fleet);
      return seconds;
    }
    case 'http': {
      const { seconds, value } = await timed(() => postBulk(rt, fleet.deviceIds));
      expectAllAccepted(value, fleet);
      return seconds;
    }
  }
}

/** Each run starts from the same empty tables, and with no checkpoint owed from the previous run. */
async function resetCommands(db: Db): Promise<void> {
  await db.raw('TRUNCATE commands, command_batches, events');
  await db.raw('CHECKPOINT').catch(() => undefined); // needs superuser (or pg_checkpoint); noise reduction only
}

interface FloorRows {
  ids: string[];
  deviceIds: string[];
  enrollmentIds: string[];
  payloads: string[];
}

function floorRows(fleet: Fleet): FloorRows {
  const ids = fleet.deviceIds.map(() => crypto.randomUUID());
  // The payload the test platform would build, so both paths store the same bytes.
  const payloads = ids.map((id) => JSON.stringify({ command_id: id, type: 'lock', params: {} }));
  return { ids, deviceIds: fleet.deviceIds, enrollmentIds: fleet.enrollmentIds, payloads };
}

async function rawInsert(db: Db, rows: FloorRows): Promise<void> {
  await db.raw(
    `INSERT INTO commands (id, device_id, enrollment_id, platform, payload, type, params, priority, requested_by, expires_at)
     SELECT u.id, u.device_id, u.enrollment_id, 'android', u.payload, 'lock', '{}'::jsonb, 0, 'bench', now() + interval '30 days'
       FROM unnest(?::uuid[], ?::uuid[], ?::uuid[], ?::text[]) AS u(id, device_id, enrollment_id, payload)`,
    [rows.ids, rows.deviceIds, rows.enrollmentIds, rows.payloads] as never,
  );
}

async function postBulk(rt: BenchRuntime, deviceIds: string[]): Promise<BulkResult> {
  const res = await supertest(rt.m.app)
    .post('/api/v1/commands')
    .set('Authorization', `Bearer ${rt.adminToken}`)
    .send({ type: 'lock', device_ids: deviceIds });
  if (res.status !== 202) throw new Error(`POST /api/v1/commands answered ${res.status}: ${JSON.stringify(res.body).slice(0, 500)}`);
  return res.body as BulkResult;
}

/** A fast run that queued nothing would be a meaningless number. */
function expectAllAccepted(result: BulkResult, fleet: Fleet): void {
  if (result.accepted.length !== fleet.deviceIds.length || result.rejected.length !== 0) {
    throw new Error(`bulk enqueue accepted ${result.accepted.length} and rejected ${result.rejected.length} of ${fleet.deviceIds.length}`);
  }
}

function summarize(samples: number[]): VariantTimes {
  return {
    median_seconds: round(median(samples)),
    best_seconds: round(Math.min(...samples)),
    samples_seconds: samples.map((s) => round(s)),
  };
}

/** What the recorded steps do not cover is time spent in Node between them. */
function withNodeWork(steps: StepTime[], seconds: number): StepTime[] {
  const covered = steps.reduce((sum, s) => sum + s.ms, 0);
  return [...steps, { step: 'Node work between steps (targets, checks, payloads, pool waits)', calls: 1, ms: Math.max(0, seconds * 1000 - covered) }];
}

function meanSteps(runs: StepTime[][]): StepTime[] {
  const total = new Map<string, StepTime>();
  for (const run of runs) {
    for (const s of run) {
      const t = total.get(s.step) ?? { step: s.step, calls: 0, ms: 0 };
      t.calls += s.calls;
      t.ms += s.ms;
      total.set(s.step, t);
    }
  }
  return [...total.values()]
    .map((t) => ({ step: t.step, calls: round(t.calls / runs.length, 1), ms: round(t.ms / runs.length, 1) }))
    .sort((a, b) => b.ms - a.ms);
}
