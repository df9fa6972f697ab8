/**
 * The error vocabulary of the admin surface: every refusal has a stable `code` (clients switch on it)
 * and an HTTP status. The admin error renderer (src/http/problem.ts) is the only place that turns
 * these into responses; device-facing surfaces map them to their own protocol's error form.
 */

export type ErrorCode =
  | 'validation_failed'
  | 'malformed_json'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'device_not_found'
  | 'device_not_enrolled'
  | 'command_not_found'
  | 'command_not_permitted'
  | 'command_not_cancelable'
  | 'unknown_command_type'
  | 'invalid_params'
  | 'idempotency_conflict'
  | 'enrollment_token_not_found'
  | 'api_token_not_found'
  | 'policy_not_found'
  | 'policy_in_use'
  | 'mode_not_allowed'
  | 'token_expired'
  | 'token_revoked'
  | 'token_used_up'
  | 'push_topic_mismatch'
  | 'platform_blocked'
  | 'personal_device_blocked'
  | 'os_version_not_allowed'
  | 'manufacturer_blocked'
  | 'device_cap_reached'
  | 'not_pre_approved'
  | 'terms_not_accepted'
  | 'dem_not_supported_for_method'
  | 'user_not_found'
  | 'user_exists'
  | 'dem_limit_reached'
  | 'category_not_found'
  | 'category_exists'
  | 'terms_not_found'
  | 'restriction_not_found'
  | 'restriction_limit_reached'
  | 'default_restriction_locked'
  | 'corporate_identifier_not_found'
  | 'corporate_identifier_exists'
  | 'preapproved_device_not_found'
  | 'import_invalid'
  | 'import_needs_review'
  | 'not_ready'
  | 'internal_error';

/** The HTTP status of each code: the one table that maps refusals to statuses. */
export const STATUS_OF: Record<ErrorCode, number> = {
  validation_failed: 400,
  malformed_json: 400,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  device_not_found: 404,
  device_not_enrolled: 409,
  command_not_found: 404,
  command_not_permitted: 422,
  command_not_cancelable: 409,
  unknown_command_type: 422,
  invalid_params: 422,
  idempotency_conflict: 409,
  enrollment_token_not_found: 404,
  api_token_not_found: 404,
  policy_not_found: 404,
  policy_in_use: 409,
  mode_not_allowed: 403,
  token_expired: 403,
  token_revoked: 403,
  token_used_up: 403,
  push_topic_mismatch: 409,
  platform_blocked: 403,
  personal_device_blocked: 403,
  os_version_not_allowed: 403,
  manufacturer_blocked: 403,
  device_cap_reached: 403,
  not_pre_approved: 403,
  terms_not_accepted: 403,
  dem_not_supported_for_method: 403,
  user_not_found: 404,
  user_exists: 409,
  dem_limit_reached: 409,
  category_not_found: 404,
  category_exists: 409,
  terms_not_found: 404,
  restriction_not_found: 404,
  restriction_limit_reached: 409,
  default_restriction_locked: 409,
  corporate_identifier_not_found: 404,
  corporate_identifier_exists: 409,
  preapproved_device_not_found: 404,
  import_invalid: 422,
  import_needs_review: 409,
  not_ready: 503,
  internal_error: 500,
};

export class MooringError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    /** Extra members for the problem document (e.g. `errors` for validation). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
    this.name = 'MooringError';
    this.status = STATUS_OF[code];
  }
}

const make =
  (code: ErrorCode) =>
  (detail: string, extra?: Record<string, unknown>): MooringError =>
    new MooringError(code, detail, extra);

export const Errors = {
  of: (code: ErrorCode, detail: string, extra?: Record<string, unknown>) => new MooringError(code, detail, extra),
  validation: make('validation_failed'),
  notFound: make('not_found'),
  deviceNotFound: (id: string) => new MooringError('device_not_found', `no device with id ${id}`),
  commandNotFound: (id: string) => new MooringError('command_not_found', `no command with id ${id}`),
  commandNotCancelable: make('command_not_cancelable'),
  idempotencyConflict: make('idempotency_conflict'),
  enrollmentTokenNotFound: (id: string) => new MooringError('enrollment_token_not_found', `no enrollment token with id ${id}`),
  apiTokenNotFound: (id: string) => new MooringError('api_token_not_found', `no API token with id ${id}`),
  unauthorized: make('unauthorized'),
  forbidden: make('forbidden'),
};

export function isMooringError(err: unknown): err is MooringError {
  return err instanceof MooringError;
}
