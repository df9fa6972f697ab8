/**
 * A Mooring runtime on a fresh database, wired as `serve` wires it, with the test platform plug-in.
 * Each call gets its own database and queue namespace, so test files run side by side.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import supertest from 'supertest';
import { loadConfig, type Config } from '../../src/config';
import { PlatformRegistry } from '../../src/core/platforms';
import type { Device, Enrollment, Platform, Role } from '../../src/core/types';
import { createMooring, type Mooring } from '../../src/main';
import type { PushProviderRegistry } from '../../src/push/provider';
import { hintOf, newApiToken } from '../../src/core/secrets';
import { createTestDatabase, type TestDatabase } from './database';
import { TestPlatformCommands } from './test-platform';

export interface TestServer {
  m: Mooring;
  config: Config;
  api: supertest.Agent;
  adminToken: string;
  /** A token with the given role, created directly in the database. */
  token(role: Role): Promise<string>;
  /** An enrolled device with one device-channel enrollment. */
  device(overrides?: Partial<Device>, enrollment?: Partial<Enrollment>): Promise<{ device: Device; enrollment: Enrollment }>;
  stop(): Promise<void>;
}

export interface TestServerOptions {
  queue?: 'postgres' | 'redis';
  env?: Record<string, string>;
  pushProviders?: PushProviderRegistry;
  /** Reuse an existing database (a second server instance on the same data). */
  database?: TestDatabase;
  queueNamespace?: string;
  retryDelayMs?: number;
  /** The platform plug-ins; default: the test plug-in for android and windows. */
  platforms?: PlatformRegistry;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer & { database: TestDatabase; queueNamespace: string }> {
  const database = opts.database ?? (await createTestDatabase());
  const certsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-test-certs-'));
  const adminToken = newApiToken();
  const queueNamespace = opts.queueNamespace ?? `t_${crypto.randomBytes(5).toString('hex')}`;
  const config = loadConfig({
    DATABASE_URL: database.url,
    REDIS_URL: opts.queue === 'redis' ? process.env.REDIS_URL : undefined,
    MOORING_CERTS_DIR: certsDir,
    MOORING_DATA_DIR: path.join(certsDir, 'data'),
    MOORING_ADMIN_TOKEN: adminToken,
    MOORING_LOG_LEVEL: 'silent',
    MOORING_DB_POOL_MAX: '10',
    ...opts.env,
  });
  const platforms = opts.platforms ?? new PlatformRegistry().register(new TestPlatformCommands('android')).register(new TestPlatformCommands('windows'));
  const m = await createMooring(config, {
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    platforms,
    pushProviders: opts.pushProviders,
    queueNamespace,
    retryDelayMs: opts.retryDelayMs,
  });
  let serial = 0;
  return {
    m,
    config,
    database,
    queueNamespace,
    api: supertest.agent(m.app).set('Authorization', `Bearer ${adminToken}`),
    adminToken,
    async token(role) {
      const secret = newApiToken();
      await m.tokens.createApiToken({ name: `test ${role}`, role, secret, hint: hintOf(secret) }, { type: 'api_token.created' });
      return secret;
    },
    async device(overrides = {}, enrollment = {}) {
      serial += 1;
      const platform: Platform = overrides.platform ?? 'android';
      return m.devices.create(
        { platform, status: 'enrolled', ownership: 'corporate', serial_number: `SN${Date.now()}${serial}`, enrolled_at: new Date(), ...overrides },
        { channel_key: crypto.randomUUID(), status: 'enrolled', push_token: `push-${crypto.randomUUID()}`, ...enrollment },
      );
    },
    async stop() {
      await m.stop();
      if (!opts.database) await database.drop();
      fs.rmSync(certsDir, { recursive: true, force: true });
    },
  };
}
