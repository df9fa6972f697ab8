/**
 * The JSON a device policy controller (DPC) sends to Mooring's Android device API, validated at the
 * edge. Unknown fields are refused, so a DPC bug shows up as a clear error rather than silent data loss.
 */
import { z } from 'zod';
import { ANDROID_MODES } from './commands';

const shortText = z.string().min(1).max(200);

export const DeviceFactsSchema = z.strictObject({
  serial_number: shortText.optional(),
  /** Only device owners can read it on Android 10+; absent otherwise. */
  imei: z.string().regex(/^\d{14,15}$/, '14 or 15 digits').optional(),
  hardware_id: shortText.optional(),
  model: shortText,
  manufacturer: shortText,
  api_level: z.number().int().min(21).max(99),
  os_version: z.string().min(1).max(40),
  name: shortText.optional(),
});

export const EnrollRequestSchema = z.strictObject({
  /** The enrollment token from the provisioning extras bundle (or typed by the user). */
  token: z.string().min(1).max(100),
  /** The management mode the DPC set up (the provisioning mode it chose). */
  mode: z.enum(ANDROID_MODES),
  device: DeviceFactsSchema,
  fcm_token: z.string().min(1).max(4096).optional(),
});
export type EnrollRequest = z.output<typeof EnrollRequestSchema>;

export const CheckinRequestSchema = z.strictObject({
  /** The policy version the DPC has applied; the answer carries settings only when it is stale. */
  policy_version: z.number().int().min(0).optional(),
  fcm_token: z.string().min(1).max(4096).optional(),
  status: z.record(z.string(), z.unknown()).optional(),
  inventory: z.record(z.string(), z.unknown()).optional(),
  os_version: z.string().min(1).max(40).optional(),
  api_level: z.number().int().min(21).max(99).optional(),
  /** Long poll for devices without Google services: wait up to this many seconds for a command. */
  wait: z.number().int().min(0).max(60).optional(),
});
export type CheckinRequest = z.output<typeof CheckinRequestSchema>;

export const CommandResultSchema = z.strictObject({
  status: z.enum(['ok', 'error', 'not_now']),
  result: z.unknown().optional(),
  error: z.union([z.string().max(2000), z.strictObject({ code: z.string().max(100), message: z.string().max(2000) })]).optional(),
});
export type CommandResult = z.output<typeof CommandResultSchema>;
