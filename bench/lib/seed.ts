/** The fleet: enrolled Android devices with one device-channel enrollment each, made in bulk SQL. */
import type { Db } from '../../src/storage/db';

export interface Fleet {
  /** Parallel arrays: enrollmentIds[i] is the live enrollment of deviceIds[i]. */
  deviceIds: string[];
  enrollmentIds: string[];
}

export async function seedFleet(db: Db, count: number): Promise<Fleet> {
  // Setup is not what we measure: two set-based statements instead of 200,000 round trips.
  await db.raw(
    `INSERT INTO devices (platform, status, ownership, serial_number, model, enrolled_at)
     SELECT 'android', 'enrolled', 'corporate', 'BENCH' || lpad(g::text, 7, '0'), 'Bench Phone', now()
       FROM generate_series(1, ?::int) g`,
    [count],
  );
  await db.raw(
    `INSERT INTO enrollments (device_id, platform, channel_key, channel_type, status, push_token)
     SELECT id, 'android', 'bench-' || id, 'device', 'enrolled', 'push-' || id FROM devices`,
  );
  // A running server would have been auto-analyzed by now; fresh tables would get guessed plans.
  await db.raw('ANALYZE devices, enrollments');
  const { rows } = await db.raw<{ rows: Array<{ device_id: string; enrollment_id: string }> }>(
    `SELECT d.id AS device_id, e.id AS enrollment_id
       FROM devices d JOIN enrollments e ON e.device_id = d.id
      ORDER BY d.serial_number`,
  );
  return { deviceIds: rows.map((r) => r.device_id), enrollmentIds: rows.map((r) => r.enrollment_id) };
}
