/**
 * The neutral command vocabulary of the admin API (CONTRACTS.md, "Neutral command types"). Each
 * platform maps the types it supports to its wire format and refuses the rest with a reason.
 */
export const COMMAND_TYPES = [
  'lock',
  'wipe',
  'restart',
  'device_info',
  'lost_mode_on',
  'lost_mode_off',
  'clear_passcode',
  'reset_password',
  'install_profile',
  'remove_profile',
  'profile_list',
  'security_info',
  'installed_application_list',
  'shutdown',
  'relinquish',
  'remove_work_profile',
  'clear_app_data',
  'raw',
] as const;

export type CommandType = (typeof COMMAND_TYPES)[number];
