/** Platform-neutral records shared by the protocol front ends, the admin API and storage. */

export const PLATFORMS = ['apple', 'windows', 'android'] as const;
export type Platform = (typeof PLATFORMS)[number];

export const DEVICE_STATUSES = ['pending', 'enrolled', 'unenrolled', 'blocked', 'pre_approved'] as const;
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

export const OWNERSHIPS = ['corporate', 'personal', 'unknown'] as const;
export type Ownership = (typeof OWNERSHIPS)[number];

export const COMMAND_STATUSES = ['queued', 'sent', 'acknowledged', 'error', 'not_now', 'expired', 'canceled'] as const;
export type CommandStatus = (typeof COMMAND_STATUSES)[number];

export const ROLES = ['admin', 'operator', 'enroller', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Params = Record<string, Json>;

export interface Device {
  id: string;
  platform: Platform;
  status: DeviceStatus;
  ownership: Ownership;
  mode: string | null;
  supervised: boolean;
  udid: string | null;
  serial_number: string | null;
  imei: string | null;
  hardware_id: string | null;
  model: string | null;
  manufacturer: string | null;
  os_version: string | null;
  name: string | null;
  user_ref: string | null;
  category: string | null;
  category_id: string | null;
  /** The directory user the device belongs to (null for userless and DEM-enrolled devices). */
  user_id: string | null;
  /** The device enrollment manager who set it up. */
  enrolled_by: string | null;
  /** Why the device has its ownership: dem, preapproved, corporate_identifier, enrollment_mode, token, admin, default. */
  ownership_source: string | null;
  counts_for_cap: boolean;
  enrollment_trace: Record<string, Json> | null;
  policy_id: string | null;
  /** Android API level (e.g. 34), when the device reported it. */
  api_level: number | null;
  enrolled_at: Date | null;
  last_seen_at: Date | null;
  inventory: Record<string, Json>;
  created_at: Date;
  updated_at: Date;
}

/**
 * What permission checks and command builders see of a device: what decides whether a command is
 * allowed and how it is built. Kept small because a bulk command reads it for 100,000 devices.
 */
export const DEVICE_FACTS = ['id', 'platform', 'status', 'ownership', 'mode', 'supervised', 'model', 'manufacturer', 'os_version', 'api_level', 'udid'] as const;
export type DeviceFacts = Pick<Device, (typeof DEVICE_FACTS)[number]>;

/** One management channel of a device (Apple device or user channel, one Windows or Android registration). */
export interface Enrollment {
  id: string;
  device_id: string;
  platform: Platform;
  channel_key: string;
  channel_type: string;
  status: 'pending' | 'enrolled' | 'unenrolled';
  push_topic: string | null;
  push_magic: string | null;
  push_token: string | null;
  push_token_dead_at: Date | null;
  cert_sha256: string | null;
  last_seen_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** What a push needs to know of an enrollment. */
export type PushChannel = Pick<Enrollment, 'id' | 'device_id' | 'platform' | 'status' | 'push_topic' | 'push_magic' | 'push_token' | 'push_token_dead_at'>;
export const PUSH_CHANNEL_COLUMNS = ['id', 'device_id', 'platform', 'status', 'push_topic', 'push_magic', 'push_token', 'push_token_dead_at'] as const;

export interface Command {
  id: string;
  seq: number;
  device_id: string;
  enrollment_id: string;
  platform: Platform;
  type: string;
  params: Params;
  payload: string;
  status: CommandStatus;
  priority: number;
  attempts: number;
  not_now_count: number;
  result: Json | null;
  error: Json | null;
  effect: string | null;
  idempotency_key: string | null;
  batch_id: string | null;
  requested_by: string | null;
  expires_at: Date | null;
  created_at: Date;
  sent_at: Date | null;
  not_now_at: Date | null;
  completed_at: Date | null;
  canceled_at: Date | null;
  expired_at: Date | null;
}

export interface MooringEvent {
  id: number;
  type: string;
  device_id: string | null;
  command_id: string | null;
  actor: string | null;
  data: Record<string, Json>;
  created_at: Date;
}

/** What a new event says; storage adds id and time. */
export interface EventInput {
  type: string;
  device_id?: string | null;
  command_id?: string | null;
  actor?: string | null;
  data?: Record<string, Json>;
}
