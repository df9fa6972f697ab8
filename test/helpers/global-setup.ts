/**
 * Test services: Postgres from DATABASE_URL, else an embedded cluster in a temp dir; Redis from
 * REDIS_URL, else a `redis-server` on a free port if the binary exists, else Redis tests are skipped
 * (and say so). Values set on process.env here reach every test worker.
 */
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startEmbeddedPostgres } from '../../src/storage/embedded';

declare global {
  // eslint-disable-next-line no-var
  var __mooringTestTeardown: Array<() => Promise<void>> | undefined;
}

export default async function globalSetup(): Promise<void> {
  const teardown: Array<() => Promise<void>> = [];
  globalThis.__mooringTestTeardown = teardown;

  if (!process.env.DATABASE_URL) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-test-pg-'));
    fs.chmodSync(dir, 0o755);
    const pg = await startEmbeddedPostgres(dir, 0);
    process.env.DATABASE_URL = pg.connectionString;
    teardown.push(async () => {
      await pg.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    process.stdout.write(`\n[test] DATABASE_URL unset: using an embedded Postgres in ${dir}\n`);
  }

  if (!process.env.REDIS_URL) {
    const binary = which('redis-server');
    if (binary) {
      const port = await freePort();
      const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      await waitForPort(port);
      process.env.REDIS_URL = `redis://127.0.0.1:${port}`;
      teardown.push(async () => {
        child.kill('SIGTERM');
      });
      process.stdout.write(`[test] REDIS_URL unset: started ${binary} on port ${port}\n`);
    } else {
      process.stdout.write('[test] REDIS_URL unset and no redis-server binary: tests on the Redis queue backend are SKIPPED\n');
    }
  }
}

function which(cmd: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`]).toString().trim() || undefined;
  } catch {
    return undefined;
  }
}

async function waitForPort(port: number): Promise<void> {
  const net = await import('node:net');
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not open port ${port}`);
}
