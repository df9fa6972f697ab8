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

export interface PlatformRuntimeOptions {
  databaseUrl: string;
  poolMax?: string;
  /** The database is the run's own embedded one, so one process holds every queue change (as `npm start` does). */
  singleProcess?: boolean;
}

/** `name` names the temp dir and the queue namespace (`mooring-bench-<name>-`, `bench_<name>_`). */
export async function createPlatformMooring(name: string, plugin: PlatformCommands, opts: PlatformRuntimeOptions): Promise<PlatformMooring> {
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
    // As in the embedded default: the queue generation lives in this process, so idle lookups can be skipped.
    MOORING_IDLE_CACHE: opts.singleProcess ? 'local' : 'auto',
  });
  const platforms = new PlatformRegistry().register(plugin);
  const queueNamespace = `bench_${name}_${crypto.randomBytes(5).toString('hex')}`;
  const m = await createMooring(config, { logger: pino({ level: 'silent' }), platforms, queueNamespace }).catch((err: unknown) => {
    removeState();
    throw err;
  });
  return { m, adminToken, config, removeState };
}
