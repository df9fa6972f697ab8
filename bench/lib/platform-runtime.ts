/** The Mooring that bench:android and bench:windows each wire as `serve` does, with one real platform plug-in, on a temp state dir. */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig, type Config } from '../../src/config';
import { PlatformRegistry, type PlatformCommands } from '../../src/core/platforms';
import { newApiToken } from '../../src/core/secrets';
import { createMooring, type Mooring } from '../../src/main';

export interface PlatformMooring {
  m: Mooring;
  adminToken: string;
  config: Config;
  /** Removes the temp state dir (certificates, data). */
  removeState(): void;
}

/** `name` names the temp dir and the queue namespace (`mooring-bench-<name>-`, `bench_<name>_`). */
export async function createPlatformMooring(name: string, plugin: PlatformCommands, opts: { databaseUrl: string; poolMax?: string }): Promise<PlatformMooring> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `mooring-bench-${name}-`));
  const removeState = () => fs.rmSync(stateDir, { recursive: true, force: true });
  const adminToken = newApiToken();
  const config = loadConfig({
    DATABASE_URL: opts.databaseUrl,
    MOORING_CERTS_DIR: path.join(stateDir, 'certs'),
    MOORING_DATA_DIR: path.join(stateDir, 'data'),
    MOORING_ADMIN_TOKEN: adminToken,
    MOORING_DB_POOL_MAX: opts.poolMax,
    MOORING_LOG_LEVEL: 'silent',
  });
  const platforms = new PlatformRegistry().register(plugin);
  const queueNamespace = `bench_${name}_${crypto.randomBytes(5).toString('hex')}`;
  const m = await createMooring(config, { logger: pino({ level: 'silent' }), platforms, queueNamespace }).catch((err: unknown) => {
    removeState();
    throw err;
  });
  return { m, adminToken, config, removeState };
}
