/** Where the embedded Postgres puts its Unix socket, and when it does without one. */
import path from 'node:path';
import { socketDirectory } from '../../src/storage/embedded';

const onWindows = process.platform === 'win32';

(onWindows ? it.skip : it)('puts the socket in the cluster directory, resolved to an absolute path', () => {
  expect(socketDirectory('/var/lib/mooring/postgres', 54321)).toBe('/var/lib/mooring/postgres');
  expect(socketDirectory('data/postgres', 5432)).toBe(path.resolve('data/postgres'));
});

(onWindows ? it.skip : it)('does without (TCP) where the socket path would be too long or need quoting', () => {
  const deep = `/srv/${'d'.repeat(80)}/postgres`;
  expect(Buffer.byteLength(`${deep}/.s.PGSQL.54321`)).toBeGreaterThan(100);
  expect(socketDirectory(deep, 54321)).toBeUndefined();
  expect(socketDirectory(`/srv/${'d'.repeat(70)}/postgres`, 54321)).toBeDefined(); // 99 bytes in all
  for (const odd of ['/srv/my data/postgres', '/srv/a,b/postgres', '/srv/"q"/postgres', "/srv/it's/postgres"]) {
    expect(socketDirectory(odd, 5432)).toBeUndefined();
  }
});
