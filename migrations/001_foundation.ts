/**
 * The foundation schema: devices and their management channels, the one command queue, enrollment
 * and API tokens, the audit/outbox event log, and the certificate inventory.
 * Migrations are numbered and append-only: change the schema with a new file, never by editing this.
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE EXTENSION IF NOT EXISTS pgcrypto'); // gen_random_uuid() on Postgres 12 and older

  await knex.schema.createTable('devices', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('platform').notNullable();
    t.text('status').notNullable().defaultTo('pending');
    t.text('ownership').notNullable().defaultTo('unknown');
    t.text('mode');
    t.boolean('supervised').notNullable().defaultTo(false);
    t.text('udid');
    t.text('serial_number');
    t.text('imei');
    t.text('hardware_id'); // Windows HWDevID / DeviceID, Android hardware id
    t.text('model');
    t.text('manufacturer');
    t.text('os_version');
    t.text('name');
    t.text('user_ref');
    t.text('category');
    t.timestamp('enrolled_at', { useTz: true });
    t.timestamp('last_seen_at', { useTz: true });
    t.jsonb('inventory').notNullable().defaultTo('{}');
    t.timestamps(true, true);
  });
  await knex.raw(`
    ALTER TABLE devices
      ADD CONSTRAINT devices_platform_check CHECK (platform IN ('apple', 'windows', 'android')),
      ADD CONSTRAINT devices_status_check CHECK (status IN ('pending', 'enrolled', 'unenrolled', 'blocked')),
      ADD CONSTRAINT devices_ownership_check CHECK (ownership IN ('corporate', 'personal', 'unknown'))`);
  // Hardware lookups on enrollment; list order for cursor pagination.
  await knex.raw('CREATE UNIQUE INDEX devices_platform_udid ON devices (platform, udid) WHERE udid IS NOT NULL');
  await knex.raw('CREATE INDEX devices_serial ON devices (serial_number) WHERE serial_number IS NOT NULL');
  await knex.raw('CREATE INDEX devices_imei ON devices (imei) WHERE imei IS NOT NULL');
  await knex.raw('CREATE INDEX devices_hardware_id ON devices (platform, hardware_id) WHERE hardware_id IS NOT NULL');
  await knex.raw('CREATE INDEX devices_list ON devices (created_at DESC, id DESC)');

  await knex.schema.createTable('enrollments', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.uuid('device_id').notNullable().references('devices.id').onDelete('CASCADE');
    t.text('platform').notNullable();
    // The platform's own channel id: Apple "UDID" or "UDID:UserID", Windows DeviceID, Android registration id.
    t.text('channel_key').notNullable();
    t.text('channel_type').notNullable().defaultTo('device');
    t.text('status').notNullable().defaultTo('pending');
    t.text('push_topic');
    t.text('push_magic');
    t.text('push_token');
    t.timestamp('push_token_dead_at', { useTz: true });
    t.text('cert_sha256');
    t.timestamp('last_seen_at', { useTz: true });
    t.timestamps(true, true);
    t.unique(['platform', 'channel_key']);
  });
  await knex.raw('CREATE INDEX enrollments_device ON enrollments (device_id)');
  await knex.raw('CREATE INDEX enrollments_cert ON enrollments (cert_sha256) WHERE cert_sha256 IS NOT NULL');

  await knex.schema.createTable('command_batches', (t) => {
    t.uuid('id').primary();
    t.text('type').notNullable();
    t.jsonb('params').notNullable().defaultTo('{}');
    t.integer('accepted').notNullable().defaultTo(0);
    t.integer('rejected').notNullable().defaultTo(0);
    t.text('idempotency_key');
    t.text('requested_by');
    t.jsonb('response'); // the first answer, replayed for a repeated idempotency key
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE UNIQUE INDEX command_batches_idem ON command_batches (idempotency_key) WHERE idempotency_key IS NOT NULL');

  await knex.schema.createTable('commands', (t) => {
    t.uuid('id').primary();
    t.bigIncrements('seq', { primaryKey: false });
    // No foreign keys on commands: the per-row checks cost a third of a 100,000-device bulk insert.
    // Commands are written only for devices and enrollments just read (CommandStore.loadTargets);
    // whatever deletes a device deletes its commands itself.
    t.uuid('device_id').notNullable();
    t.uuid('enrollment_id').notNullable();
    t.text('platform').notNullable();
    t.text('type').notNullable();
    t.jsonb('params').notNullable().defaultTo('{}');
    t.text('payload').notNullable();
    t.text('status').notNullable().defaultTo('queued');
    t.smallint('priority').notNullable().defaultTo(0);
    t.integer('attempts').notNullable().defaultTo(0);
    t.integer('not_now_count').notNullable().defaultTo(0);
    t.jsonb('result');
    t.jsonb('error');
    t.text('effect');
    t.text('idempotency_key');
    t.uuid('batch_id'); // command_batches.id; batches are never deleted, so no per-row check
    t.text('requested_by');
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('sent_at', { useTz: true });
    t.timestamp('not_now_at', { useTz: true });
    t.timestamp('completed_at', { useTz: true });
    t.timestamp('canceled_at', { useTz: true });
    t.timestamp('expired_at', { useTz: true });
  });
  await knex.raw(`ALTER TABLE commands ADD CONSTRAINT commands_status_check
    CHECK (status IN ('queued', 'sent', 'acknowledged', 'error', 'not_now', 'expired', 'canceled'))`);
  // The hot path: the next deliverable command of one enrollment, priority first, then arrival order.
  // Only commands waiting for delivery are in it, so a poll never steps over handed-out ones.
  await knex.raw(`CREATE INDEX commands_next ON commands (enrollment_id, priority DESC, seq)
    WHERE status IN ('queued', 'not_now')`);
  // Handed out but never reported: the redelivery sweep puts these back in the queue.
  await knex.raw(`CREATE INDEX commands_unreported ON commands (sent_at) WHERE status = 'sent'`);
  await knex.raw('CREATE INDEX commands_device ON commands (device_id, seq DESC)');
  await knex.raw('CREATE INDEX commands_batch ON commands (batch_id) WHERE batch_id IS NOT NULL');
  await knex.raw(`CREATE INDEX commands_expiry ON commands (expires_at) WHERE status IN ('queued', 'not_now')`);
  await knex.raw('CREATE UNIQUE INDEX commands_idem ON commands (device_id, idempotency_key) WHERE idempotency_key IS NOT NULL');

  await knex.schema.createTable('enrollment_tokens', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('platform').notNullable();
    t.text('token_hash').notNullable().unique();
    t.text('hint').notNullable(); // the last characters, so an admin can tell tokens apart
    t.uuid('policy_id');
    t.text('ownership').notNullable().defaultTo('unknown');
    t.text('allow_personal_usage');
    t.text('user_ref');
    t.boolean('one_time').notNullable().defaultTo(false);
    t.integer('max_uses');
    t.integer('uses').notNullable().defaultTo(0);
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('revoked_at', { useTz: true });
    t.text('created_by');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE INDEX enrollment_tokens_list ON enrollment_tokens (created_at DESC, id DESC)');

  await knex.schema.createTable('api_tokens', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('name').notNullable();
    t.text('role').notNullable();
    t.text('token_hash').notNullable().unique();
    t.text('hint').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_used_at', { useTz: true });
    t.timestamp('revoked_at', { useTz: true });
  });
  await knex.raw(`ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'operator', 'enroller', 'viewer'))`);

  // The audit trail, and the outbox webhooks are delivered from (published_at marks relayed rows).
  await knex.schema.createTable('events', (t) => {
    t.bigIncrements('id');
    t.text('type').notNullable();
    t.uuid('device_id');
    t.uuid('command_id');
    t.text('actor');
    t.jsonb('data').notNullable().defaultTo('{}');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('published_at', { useTz: true });
  });
  await knex.raw('CREATE INDEX events_unpublished ON events (id) WHERE published_at IS NULL');
  await knex.raw('CREATE INDEX events_device ON events (device_id, id DESC) WHERE device_id IS NOT NULL');
  await knex.raw('CREATE INDEX events_type ON events (type, id DESC)');

  await knex.schema.createTable('issued_certificates', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('serial').notNullable().unique();
    t.text('sha256').notNullable().unique();
    t.text('subject').notNullable();
    t.text('purpose').notNullable(); // device_identity | tls_server | ...
    t.uuid('device_id').references('devices.id').onDelete('SET NULL');
    t.uuid('enrollment_id').references('enrollments.id').onDelete('SET NULL');
    t.timestamp('not_before', { useTz: true }).notNullable();
    t.timestamp('not_after', { useTz: true }).notNullable();
    t.timestamp('revoked_at', { useTz: true });
    t.text('pem').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('push_certificates', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('platform').notNullable();
    t.text('topic').notNullable();
    t.text('certificate_pem').notNullable();
    t.text('private_key_sealed').notNullable(); // encrypted at rest, never stored in the clear
    t.timestamp('not_after', { useTz: true }).notNullable();
    t.boolean('active').notNullable().defaultTo(true);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE UNIQUE INDEX push_certificates_active ON push_certificates (platform) WHERE active');
}

export async function down(knex: Knex): Promise<void> {
  for (const table of [
    'push_certificates',
    'issued_certificates',
    'events',
    'api_tokens',
    'enrollment_tokens',
    'commands',
    'command_batches',
    'enrollments',
    'devices',
  ]) {
    await knex.schema.dropTableIfExists(table);
  }
}
