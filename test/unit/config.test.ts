import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, SETTINGS, loadConfig } from '../../src/config';

describe('loadConfig', () => {
  it('runs with nothing configured: embedded database, queues on Postgres, the documented ports', () => {
    const c = loadConfig({});
    expect(c.publicUrl.toString()).toBe('https://localhost:8443/');
    expect([c.httpsPort, c.httpPort]).toEqual([8443, 8080]);
    expect(c.databaseUrl).toBeUndefined();
    expect(c.redisUrl).toBeUndefined();
    expect(c.dataDir).toBe(path.resolve('data'));
    expect(c.webhookUrls).toEqual([]);
  });

  it('reads every variable it documents', () => {
    const c = loadConfig({
      MOORING_PUBLIC_URL: 'https://mdm.example.com',
      DATABASE_URL: 'postgres://db/mooring',
      REDIS_URL: 'redis://cache:6379',
      MOORING_HTTP_PORT: '9000',
      MOORING_WEBHOOK_URLS: 'https://a.example/hook, https://b.example/hook',
      MOORING_TRUSTED_PROXY_CERT_HEADER: 'Client-Cert',
    });
    expect(c.publicUrl.hostname).toBe('mdm.example.com');
    expect(c.databaseUrl).toBe('postgres://db/mooring');
    expect(c.redisUrl).toBe('redis://cache:6379');
    expect(c.httpPort).toBe(9000);
    expect(c.webhookUrls).toEqual(['https://a.example/hook', 'https://b.example/hook']);
    expect(c.trustedProxyCertHeader).toBe('client-cert');
  });

  it('names every bad variable at once', () => {
    let error: unknown;
    try {
      loadConfig({ MOORING_HTTP_PORT: 'eighty', MOORING_PUBLIC_URL: 'not a url', MOORING_LOG_LEVEL: 'loud' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/MOORING_HTTP_PORT/);
    expect(problems).toMatch(/MOORING_PUBLIC_URL/);
    expect(problems).toMatch(/MOORING_LOG_LEVEL/);
  });

  it('is documented in the README, variable by variable', () => {
    const readme = fs.readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
    for (const name of Object.keys(SETTINGS)) expect(readme).toContain(`\`${name}\``);
  });
});
