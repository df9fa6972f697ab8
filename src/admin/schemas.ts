/**
 * The admin API's request and response shapes (zod, documented into OpenAPI) and the serializers that
 * turn stored rows into them. Request bodies are strict: an unknown field is an error, not a silence.
 */
import { z } from './zod';
import { COMMAND_TYPES } from '../core/command-types';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../core/pagination';
import { COMMAND_STATUSES, DEVICE_STATUSES, OWNERSHIPS, PLATFORMS, ROLES, type Command, type Device, type MooringEvent } from '../core/types';
import type { ApiToken, EnrollmentToken } from '../storage/tokens';

export const MAX_BULK_DEVICES = 100_000;
const iso = z.string().openapi({ format: 'date-time' });
const uuid = z.uuid();

export const IdParams = z.object({ id: z.string().openapi({ description: 'resource id (UUID)' }) });

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE),
  cursor: z.string().max(512).optional().openapi({ description: 'next_cursor of the previous page' }),
});

export function pageOf<T extends z.ZodType>(item: T, name: string) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable() }).openapi(name);
}

// ---- devices ----

export const DeviceSchema = z
  .object({
    id: uuid,
    platform: z.enum(PLATFORMS),
    status: z.enum(DEVICE_STATUSES),
    ownership: z.enum(OWNERSHIPS),
    mode: z.string().nullable(),
    supervised: z.boolean(),
    serial_number: z.string().nullable(),
    udid: z.string().nullable(),
    imei: z.string().nullable(),
    hardware_id: z.string().nullable(),
    model: z.string().nullable(),
    manufacturer: z.string().nullable(),
    os_version: z.string().nullable(),
    name: z.string().nullable(),
    user: z.string().nullable(),
    user_id: uuid.nullable().openapi({ description: 'the directory user (GET /api/v1/users/{id})' }),
    category: z.string().nullable(),
    category_id: uuid.nullable(),
    ownership_source: z.string().nullable().openapi({ description: 'why the device has its ownership: dem, preapproved, corporate_identifier, enrollment_mode, token, admin, default' }),
    enrolled_by: uuid.nullable().openapi({ description: 'the device enrollment manager who enrolled it' }),
    enrollment_trace: z.record(z.string(), z.unknown()).nullable().openapi({ description: 'the enrollment restrictions and rules that applied when it enrolled' }),
    policy_id: uuid.nullable(),
    api_level: z.number().int().nullable().openapi({ description: 'Android API level' }),
    enrolled_at: iso.nullable(),
    last_seen_at: iso.nullable(),
    inventory: z.record(z.string(), z.unknown()),
    created_at: iso,
  })
  .openapi('Device');

export const DeviceListQuery = PageQuery.extend({
  platform: z.enum(PLATFORMS).optional(),
  status: z.enum(DEVICE_STATUSES).optional(),
  q: z.string().min(1).max(200).optional().openapi({ description: 'matches name, serial, UDID, IMEI, hardware id, model or user' }),
});

export function deviceJson(d: Device): z.input<typeof DeviceSchema> {
  return {
    id: d.id,
    platform: d.platform,
    status: d.status,
    ownership: d.ownership,
    mode: d.mode,
    supervised: d.supervised,
    serial_number: d.serial_number,
    udid: d.udid,
    imei: d.imei,
    hardware_id: d.hardware_id,
    model: d.model,
    manufacturer: d.manufacturer,
    os_version: d.os_version,
    name: d.name,
    user: d.user_ref,
    user_id: d.user_id ?? null,
    category: d.category,
    category_id: d.category_id ?? null,
    ownership_source: d.ownership_source ?? null,
    enrolled_by: d.enrolled_by ?? null,
    enrollment_trace: d.enrollment_trace ?? null,
    policy_id: d.policy_id ?? null,
    api_level: d.api_level ?? null,
    enrolled_at: d.enrolled_at?.toISOString() ?? null,
    last_seen_at: d.last_seen_at?.toISOString() ?? null,
    inventory: d.inventory,
    created_at: d.created_at.toISOString(),
  };
}

// ---- commands ----

const commandType = z.enum(COMMAND_TYPES).openapi({ description: 'neutral command type; each platform maps it or refuses it with 422' });
const params = z.record(z.string(), z.unknown()).openapi({ description: 'type-specific parameters, e.g. { "message": "..." } for lock' });

export const CommandRequestSchema = z
  .strictObject({
    type: commandType,
    params: params.optional(),
    idempotency_key: z.string().min(1).max(200).optional().openapi({ description: 'a repeat with the same key returns the first command' }),
    expires_in: z.number().int().min(60).max(365 * 24 * 3600).optional().openapi({ description: 'seconds until the command expires undelivered' }),
    priority: z.number().int().min(-100).max(100).optional().openapi({ description: 'higher is delivered first; default 0' }),
  })
  .openapi('CommandRequest');

export const BulkCommandRequestSchema = CommandRequestSchema.extend({
  device_ids: z.array(z.string().min(1).max(64)).min(1).max(MAX_BULK_DEVICES),
}).openapi('BulkCommandRequest');

export const CommandSchema = z
  .object({
    id: uuid,
    device_id: uuid,
    type: z.string(),
    params,
    status: z.enum(COMMAND_STATUSES),
    priority: z.number().int(),
    effect: z.string().nullable().openapi({ description: 'what the command really does on this device, when it differs from its name' }),
    attempts: z.number().int(),
    result: z.unknown().nullable(),
    error: z.unknown().nullable(),
    batch_id: uuid.nullable(),
    idempotency_key: z.string().nullable(),
    requested_by: z.string().nullable(),
    expires_at: iso.nullable(),
    created_at: iso,
    sent_at: iso.nullable(),
    not_now_at: iso.nullable(),
    completed_at: iso.nullable(),
    canceled_at: iso.nullable(),
    expired_at: iso.nullable(),
  })
  .openapi('Command');

export const BulkResultSchema = z
  .object({
    batch_id: uuid,
    accepted: z.array(z.string()),
    rejected: z.array(z.object({ device_id: z.string(), code: z.string(), detail: z.string(), reason: z.string().optional() })),
  })
  .openapi('BulkCommandResult');

const isoOrNull = (d: Date | null) => d?.toISOString() ?? null;

export function commandJson(c: Command): z.input<typeof CommandSchema> {
  return {
    id: c.id,
    device_id: c.device_id,
    type: c.type,
    params: c.params,
    status: c.status,
    priority: c.priority,
    effect: c.effect,
    attempts: c.attempts,
    result: c.result,
    error: c.error,
    batch_id: c.batch_id,
    idempotency_key: c.idempotency_key,
    requested_by: c.requested_by,
    expires_at: isoOrNull(c.expires_at),
    created_at: c.created_at.toISOString(),
    sent_at: isoOrNull(c.sent_at),
    not_now_at: isoOrNull(c.not_now_at),
    completed_at: isoOrNull(c.completed_at),
    canceled_at: isoOrNull(c.canceled_at),
    expired_at: isoOrNull(c.expired_at),
  };
}

// ---- enrollment tokens ----

export const EnrollmentTokenRequestSchema = z
  .strictObject({
    platform: z.enum(PLATFORMS),
    policy_id: uuid.optional(),
    ownership: z.enum(OWNERSHIPS).optional(),
    allow_personal_usage: z.enum(['allowed', 'disallowed', 'disallowed_userless']).optional(),
    expires_in: z
      .union([z.number().int().min(60).max(10 * 365 * 24 * 3600), z.literal('never')])
      .optional()
      .openapi({ description: 'seconds until the token expires (default 30 days), or "never"' }),
    one_time: z.boolean().optional(),
    user: z.string().min(1).max(320).optional(),
    category_id: uuid.optional().openapi({ description: 'the device category enrolled devices get' }),
    category_choice: z.boolean().optional().openapi({ description: 'the Apple profile page and the Windows sign-in page ask the user to choose a category (category_id is preselected)' }),
    max_uses: z.number().int().min(1).max(1_000_000).optional(),
    additional_data: z.string().max(1024).optional().openapi({ description: 'handed to the DPC with the token (Android)' }),
  })
  .openapi('EnrollmentTokenRequest');

export const EnrollmentTokenSchema = z
  .object({
    id: uuid,
    platform: z.enum(PLATFORMS),
    hint: z.string().openapi({ description: 'last characters of the token' }),
    policy_id: uuid.nullable(),
    ownership: z.enum(OWNERSHIPS),
    allow_personal_usage: z.string().nullable(),
    additional_data: z.string().nullable(),
    user: z.string().nullable(),
    category_id: uuid.nullable(),
    category_choice: z.boolean(),
    one_time: z.boolean(),
    max_uses: z.number().int().nullable(),
    uses: z.number().int(),
    expires_at: iso.nullable(),
    revoked_at: iso.nullable(),
    created_at: iso,
  })
  .openapi('EnrollmentToken');

export const CreatedEnrollmentTokenSchema = EnrollmentTokenSchema.extend({
  token: z.string().openapi({ description: 'the secret, shown only in this answer' }),
  enroll_url: z.string().optional().openapi({ description: 'Apple: the enrollment profile URL to open on the device' }),
}).openapi('CreatedEnrollmentToken');

export function enrollmentTokenJson(t: EnrollmentToken): z.input<typeof EnrollmentTokenSchema> {
  return {
    id: t.id,
    platform: t.platform,
    hint: t.hint,
    policy_id: t.policy_id,
    ownership: t.ownership,
    allow_personal_usage: t.allow_personal_usage,
    additional_data: t.additional_data,
    user: t.user_ref,
    category_id: t.category_id ?? null,
    category_choice: Boolean(t.category_choice),
    one_time: t.one_time,
    max_uses: t.max_uses,
    uses: t.uses,
    expires_at: isoOrNull(t.expires_at),
    revoked_at: isoOrNull(t.revoked_at),
    created_at: t.created_at.toISOString(),
  };
}

// ---- API tokens ----

export const ApiTokenRequestSchema = z
  .strictObject({ name: z.string().min(1).max(100), role: z.enum(ROLES) })
  .openapi('ApiTokenRequest');

export const ApiTokenSchema = z
  .object({
    id: uuid,
    name: z.string(),
    role: z.enum(ROLES),
    hint: z.string(),
    created_at: iso,
    last_used_at: iso.nullable(),
    revoked_at: iso.nullable(),
  })
  .openapi('ApiToken');

export const CreatedApiTokenSchema = ApiTokenSchema.extend({ token: z.string() }).openapi('CreatedApiToken');

export function apiTokenJson(t: ApiToken): z.input<typeof ApiTokenSchema> {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    hint: t.hint,
    created_at: t.created_at.toISOString(),
    last_used_at: isoOrNull(t.last_used_at),
    revoked_at: isoOrNull(t.revoked_at),
  };
}

// ---- events ----

export const EventSchema = z
  .object({
    id: z.number().int(),
    type: z.string(),
    device_id: uuid.nullable(),
    command_id: uuid.nullable(),
    actor: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
    created_at: iso,
  })
  .openapi('Event');

export const EventListQuery = PageQuery.extend({
  device_id: uuid.optional(),
  type: z.string().min(1).max(100).optional(),
});

export function eventJson(e: MooringEvent): z.input<typeof EventSchema> {
  return { ...e, created_at: e.created_at.toISOString() };
}
