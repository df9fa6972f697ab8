/**
 * Enrollment governance: who and what may enroll. Users (and device enrollment managers), device
 * categories, the two kinds of enrollment restriction (platform, device limit) with a default of
 * each, corporate identifiers, pre-approved devices, terms and their acceptances, the record of every
 * refused enrollment, and what each device got from the rules when it enrolled.
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('email').notNullable(); // stored lowercased; the key enrollments name a user by
    t.text('name');
    t.text('upn');
    t.text('sam_account_name');
    t.text('mobile');
    t.specificType('groups', 'text[]').notNullable().defaultTo('{}');
    t.boolean('is_dem').notNullable().defaultTo(false);
    t.timestamps(true, true);
  });
  await knex.raw('CREATE UNIQUE INDEX users_email ON users (email)');
  await knex.raw('CREATE INDEX users_upn ON users (lower(upn)) WHERE upn IS NOT NULL');

  await knex.schema.createTable('device_categories', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('name').notNullable();
    t.text('description');
    t.timestamps(true, true);
  });
  await knex.raw('CREATE UNIQUE INDEX device_categories_name ON device_categories (lower(name))');

  await knex.schema.createTable('enrollment_restrictions', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('kind').notNullable(); // platform | device_limit
    t.text('name').notNullable();
    t.text('description');
    t.boolean('is_default').notNullable().defaultTo(false);
    t.integer('priority'); // 1 = highest; null for the default, which always comes last
    t.boolean('assign_all_users').notNullable().defaultTo(false);
    t.specificType('assign_groups', 'text[]').notNullable().defaultTo('{}');
    t.specificType('assign_users', 'text[]').notNullable().defaultTo('{}'); // lowercased emails
    t.jsonb('settings').notNullable().defaultTo('{}');
    t.timestamps(true, true);
  });
  await knex.raw('CREATE UNIQUE INDEX enrollment_restrictions_default ON enrollment_restrictions (kind) WHERE is_default');
  await knex.raw('CREATE UNIQUE INDEX enrollment_restrictions_priority ON enrollment_restrictions (kind, priority) WHERE NOT is_default');
  await knex('enrollment_restrictions').insert([
    { kind: 'platform', name: 'All users and all devices', is_default: true, assign_all_users: true, settings: JSON.stringify({ platforms: {} }) },
    { kind: 'device_limit', name: 'All users and all devices', is_default: true, assign_all_users: true, settings: JSON.stringify({ limit: 5 }) },
  ]);

  await knex.schema.createTable('enrollment_settings', (t) => {
    t.integer('id').primary(); // always 1: one row of deployment-wide settings
    t.boolean('preapproved_only').notNullable().defaultTo(false);
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex('enrollment_settings').insert({ id: 1 });

  await knex.schema.createTable('corporate_identifiers', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('type').notNullable(); // imei | serial
    t.text('value').notNullable();
    t.text('details');
    t.uuid('device_id').references('devices.id').onDelete('SET NULL'); // the device that enrolled with it
    t.timestamp('enrolled_at', { useTz: true });
    t.timestamps(true, true);
    t.unique(['type', 'value']);
  });

  await knex.schema.alterTable('devices', (t) => {
    t.uuid('user_id').references('users.id').onDelete('SET NULL');
    t.uuid('category_id').references('device_categories.id').onDelete('SET NULL');
    t.uuid('enrolled_by').references('users.id').onDelete('SET NULL'); // the enrollment manager, for DEM devices
    t.text('ownership_source'); // dem | preapproved | corporate_identifier | enrollment_mode | token | admin | default
    t.boolean('counts_for_cap').notNullable().defaultTo(true);
    t.jsonb('enrollment_trace'); // the rules that applied when it enrolled
  });
  // A pre-approved device is listed before it enrolls, in its own status.
  await knex.raw(`ALTER TABLE devices DROP CONSTRAINT devices_status_check,
    ADD CONSTRAINT devices_status_check CHECK (status IN ('pending', 'enrolled', 'unenrolled', 'blocked', 'pre_approved'))`);
  await knex.raw('CREATE INDEX devices_user ON devices (user_id) WHERE user_id IS NOT NULL');
  await knex.raw('CREATE INDEX devices_user_ref ON devices (lower(user_ref)) WHERE user_ref IS NOT NULL');
  await knex.raw('CREATE INDEX devices_enrolled_by ON devices (enrolled_by) WHERE enrolled_by IS NOT NULL');

  await knex.schema.createTable('preapproved_devices', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('platform').notNullable(); // android | ios | macos | tvos
    t.text('device_platform').notNullable(); // android | apple: the family a serial is unique in
    t.text('serial_number').notNullable(); // case-sensitive, matched exactly
    t.text('device_name');
    t.text('ownership').notNullable();
    t.uuid('user_id').references('users.id').onDelete('SET NULL');
    t.uuid('category_id').references('device_categories.id').onDelete('SET NULL');
    t.uuid('policy_id');
    t.uuid('placeholder_device_id').references('devices.id').onDelete('SET NULL'); // the `pre_approved` row in the device list
    t.uuid('device_id').references('devices.id').onDelete('SET NULL'); // the device that enrolled as it
    t.timestamp('enrolled_at', { useTz: true });
    t.uuid('import_id');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['device_platform', 'serial_number']);
  });

  await knex.schema.alterTable('enrollment_tokens', (t) => {
    t.uuid('category_id').references('device_categories.id').onDelete('SET NULL');
    t.boolean('category_choice').notNullable().defaultTo(false); // the enrollment page asks the user for a category
  });
  // A category the user chose on the Apple enrollment page travels with the SCEP challenge to the certificate.
  await knex.schema.alterTable('scep_challenges', (t) => t.uuid('category_id'));
  await knex.schema.alterTable('issued_certificates', (t) => t.uuid('category_id'));

  await knex.schema.createTable('terms', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('name').notNullable(); // for admins only
    t.text('description');
    t.text('title').notNullable();
    t.text('summary').notNullable();
    t.text('text').notNullable();
    t.integer('version').notNullable().defaultTo(1);
    t.boolean('assign_all_users').notNullable().defaultTo(true);
    t.specificType('assign_groups', 'text[]').notNullable().defaultTo('{}');
    t.timestamps(true, true);
  });
  await knex.schema.createTable('terms_versions', (t) => {
    t.uuid('terms_id').notNullable().references('terms.id').onDelete('CASCADE');
    t.integer('version').notNullable();
    t.text('title').notNullable();
    t.text('summary').notNullable();
    t.text('text').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['terms_id', 'version']);
  });
  await knex.schema.createTable('terms_acceptances', (t) => {
    t.uuid('terms_id').notNullable().references('terms.id').onDelete('CASCADE');
    t.integer('version').notNullable();
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.timestamp('accepted_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['terms_id', 'user_id', 'version']);
  });

  await knex.schema.createTable('enrollment_attempts', (t) => {
    t.bigIncrements('id');
    t.uuid('activity_id').notNullable(); // shown to the user with the refusal, so support can find it
    t.text('platform').notNullable();
    t.text('method').notNullable();
    t.text('user_ref');
    t.text('reason').notNullable();
    t.text('detail').notNullable();
    t.jsonb('facts').notNullable().defaultTo('{}');
    t.jsonb('trace').notNullable().defaultTo('{}');
    t.uuid('enrollment_token_id');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE INDEX enrollment_attempts_time ON enrollment_attempts (created_at DESC)');
  await knex.raw('CREATE INDEX enrollment_attempts_reason ON enrollment_attempts (reason, created_at DESC)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('enrollment_attempts');
  await knex.schema.dropTable('terms_acceptances');
  await knex.schema.dropTable('terms_versions');
  await knex.schema.dropTable('terms');
  await knex.schema.alterTable('issued_certificates', (t) => t.dropColumn('category_id'));
  await knex.schema.alterTable('scep_challenges', (t) => t.dropColumn('category_id'));
  await knex.schema.alterTable('enrollment_tokens', (t) => {
    t.dropColumn('category_id');
    t.dropColumn('category_choice');
  });
  await knex.schema.dropTable('preapproved_devices');
  await knex.raw('DROP INDEX IF EXISTS devices_user_ref');
  await knex.raw(`DELETE FROM devices WHERE status = 'pre_approved'`);
  await knex.raw(`ALTER TABLE devices DROP CONSTRAINT devices_status_check,
    ADD CONSTRAINT devices_status_check CHECK (status IN ('pending', 'enrolled', 'unenrolled', 'blocked'))`);
  await knex.schema.alterTable('devices', (t) => {
    for (const c of ['user_id', 'category_id', 'enrolled_by', 'ownership_source', 'counts_for_cap', 'enrollment_trace']) t.dropColumn(c);
  });
  await knex.schema.dropTable('corporate_identifiers');
  await knex.schema.dropTable('enrollment_settings');
  await knex.schema.dropTable('enrollment_restrictions');
  await knex.schema.dropTable('device_categories');
  await knex.schema.dropTable('users');
}
