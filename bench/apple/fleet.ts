/**
 * The devices the measurements need, made before any clock starts:
 *
 * - `enrollFleet`: N simulated iPhones (test/helpers/apple-device.ts) enrolled for real over HTTPS by
 *   the load client process: each fetches and verifies the signed profile, gets its identity by SCEP,
 *   then sends Authenticate and TokenUpdate with `Mdm-Signature`. They share one RSA key pair
 *   (`scepKeys`) and one keep-alive agent. These are the devices whose Idle polls are measured.
 * - `seedPushFleet`: 10,000 enrolled Apple devices inserted in bulk SQL (devices + device-channel
 *   enrollments with push token, push magic and the certificate's topic; UDIDs 00008120-BENCH..., which
 *   no simulated device can have), as bench/lib/seed.ts does for Android: the push path reads only
 *   those columns, whatever way the device enrolled.
 */
import type { Db } from '../../src/storage/db';
import type { DeviceCredentials, LoadClient } from './client';
import type { PushTarget } from './floor';
import { adminRequest, type AppleRuntime } from './runtime';

/** A multi-use Apple enrollment token through the admin API; returns its enroll_url. */
export async function createEnrollUrl(rt: AppleRuntime, uses: number): Promise<{ url: string; token: string }> {
  const res = await adminRequest(rt, 'POST', '/api/v1/enrollment-tokens', { platform: 'apple', max_uses: uses });
  if (res.status !== 201) throw new Error(`POST /api/v1/enrollment-tokens answered ${res.status}: ${JSON.stringify(res.json)}`);
  const body = res.json as { enroll_url: string; token: string };
  return { url: body.enroll_url, token: body.token };
}

export interface EnrolledFleet {
  devices: DeviceCredentials[];
  /** Mooring's device ids, in the same order. */
  deviceIds: string[];
}

/** N simulated iPhones enrolled by the load client (see LoadClient.enroll); checked enrolled in the table. */
export async function enrollFleet(rt: AppleRuntime, client: LoadClient, count: number, concurrency: number, onProgress: (done: number) => void): Promise<EnrolledFleet> {
  const { url } = await createEnrollUrl(rt, count + 10);
  const devices = await client.enroll(url, count, concurrency, onProgress);
  const { rows } = await rt.m.db.raw<{ rows: Array<{ id: string; udid: string; status: string }> }>(
    `SELECT d.id, d.udid, e.status FROM devices d JOIN enrollments e ON e.device_id = d.id AND e.channel_type = 'device'
      WHERE d.platform = 'apple' AND d.udid = ANY(?::text[])`,
    [devices.map((d) => d.udid)],
  );
  const byUdid = new Map(rows.map((r) => [r.udid, r]));
  const deviceIds = devices.map((d) => {
    const row = byUdid.get(d.udid);
    if (!row || row.status !== 'enrolled') throw new Error(`device ${d.udid} is not enrolled (${row?.status ?? 'no row'})`);
    return row.id;
  });
  return { devices, deviceIds };
}

export interface PushFleet {
  deviceIds: string[];
  /** Token and push magic per device, in the same order. */
  targets: PushTarget[];
}

export async function seedPushFleet(db: Db, count: number, topic: string): Promise<PushFleet> {
  // Setup is not what we measure: two set-based statements instead of 20,000 round trips.
  await db.raw(
    `INSERT INTO devices (platform, status, ownership, mode, udid, serial_number, model, manufacturer, os_version, name, enrolled_at, last_seen_at)
     SELECT 'apple', 'enrolled', 'corporate', 'device', '00008120-BENCH' || lpad(g::text, 10, '0'), 'BP' || lpad(g::text, 8, '0'),
            'iPhone15,2', 'Apple', '17.5', 'Bench iPhone ' || g, now(), now()
       FROM generate_series(1, ?::int) g`,
    [count],
  );
  await db.raw(
    `INSERT INTO enrollments (device_id, platform, channel_key, channel_type, status, push_topic, push_magic, push_token, last_seen_at)
     SELECT id, 'apple', udid, 'device', 'enrolled', ?, upper(gen_random_uuid()::text),
            md5(random()::text || id::text) || md5(id::text || random()::text), now()
       FROM devices WHERE platform = 'apple' AND udid LIKE '00008120-BENCH%'`,
    [topic],
  );
  await db.raw('ANALYZE devices, enrollments');
  const { rows } = await db.raw<{ rows: Array<{ device_id: string; push_token: string; push_magic: string }> }>(
    `SELECT d.id AS device_id, e.push_token, e.push_magic
       FROM devices d JOIN enrollments e ON e.device_id = d.id
      WHERE d.platform = 'apple' AND d.udid LIKE '00008120-BENCH%'
      ORDER BY d.udid`,
  );
  if (rows.length !== count) throw new Error(`seeded ${rows.length} Apple devices, expected ${count}`);
  return { deviceIds: rows.map((r) => r.device_id), targets: rows.map((r) => ({ token: r.push_token, magic: r.push_magic })) };
}
