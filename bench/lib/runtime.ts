/**
 * A Mooring runtime wired as `serve` wires it (minus the listeners), on the bench database, with the
 * test platform plug-in standing in for the front ends that do not exist yet.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import pino from 'pino';
import { TestPlatformCommands } from '../../test/helpers/test-platform';
import { loadConfig } from '../../src/config';
import { PlatformRegistry } from '../../src/core/platforms';
import { newApiToken } from '../../src/core/secrets';
import { createMooring, type Mooring } from '../../src/main';

export interface BenchRuntime {
  m: Mooring;
  adminToken: string;
  queueNamespace: string;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  databaseUrl: string;
  redisUrl?: string;
  /** MOORING_DB_POOL_MAX as the operator set it; unset means Mooring's default. */
  poolMax?: string;
}

export async function startRuntime(opts: RuntimeOptions): Promise<BenchRuntime> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-bench-state-'));
  const adminToken = newApiToken();
  const queueNamespace = `bench_${crypto.randomBytes(5).toString('hex')}`;
  const config = loadConfig({
    DATABASE_URL: opts.databaseUrl,
    REDIS_URL: opts.redisUrl,
    MOORING_CERTS_DIR: path.join(stateDir, 'certs'),
    MOORING_DATA_DIR: path.join(stateDir, 'data'),
    MOORING_ADMIN_TOKEN: adminToken,
    MOORING_DB_POOL_MAX: opts.poolMax,
    MOORING_LOG_LEVEL: 'silent',
  });
  const platforms = new PlatformRegistry().register(new TestPlatformCommands('android'));
  const m = await createMooring(config, { logger: pino({ level: 'silent' }), platforms, queueNamespace }).catch((err: unknown) => {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw err;
  });
  return {
    m,
    adminToken,
    queueNamespace,
    close: async () => {
      await m.stop();
      if (opts.redisUrl) await deleteRedisKeys(opts.redisUrl, queueNamespace);
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** The Postgres queue schema goes with the throwaway database; Redis keys under our prefix must go by hand. */
async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = new IORedis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    for (let i = 0; i < 100_000; i++) {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } finally {
    redis.disconnect();
  }
}
