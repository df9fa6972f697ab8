/**
 * Device policies: validated settings a DPC applies. A policy's `version` goes up with every change,
 * so a device that checks in with an older version gets the new settings.
 */
import { z } from 'zod';

const packageName = z.string().regex(/^[A-Za-z][\w]*(\.[A-Za-z_][\w]*)+$/, 'a package name like com.example.app');

export const PolicySettingsSchema = z.strictObject({
  password: z
    .strictObject({
      quality: z.enum(['none', 'something', 'numeric', 'numeric_complex', 'alphabetic', 'alphanumeric', 'complex']).default('none'),
      min_length: z.number().int().min(0).max(16).optional(),
      max_failed_attempts: z.number().int().min(0).max(100).optional().describe('wipe after this many failures; 0 = never'),
    })
    .optional(),
  restrictions: z
    .strictObject({
      camera_disabled: z.boolean().optional(),
      screen_capture_disabled: z.boolean().optional(),
      usb_file_transfer_disabled: z.boolean().optional(),
    })
    .optional(),
  apps: z
    .array(
      z.strictObject({
        package: packageName,
        install: z.enum(['required', 'available', 'blocked']).default('required'),
        download_url: z.url().optional(),
      }),
    )
    .max(500)
    .optional(),
  /** The one app a dedicated device runs in lock-task (kiosk) mode. */
  kiosk_app: packageName.optional(),
  /** Free-form settings passed to the DPC as they are. */
  extra: z.record(z.string(), z.unknown()).optional(),
});

export type PolicySettings = z.output<typeof PolicySettingsSchema>;

export interface Policy {
  id: string;
  name: string;
  platform: string;
  version: number;
  settings: PolicySettings;
  created_at: Date;
  updated_at: Date;
}
