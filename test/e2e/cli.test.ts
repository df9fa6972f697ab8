/**
 * The client commands (devices, commands, enrollment-token) against a real server on an ephemeral
 * port: the commander program is driven in-process with stdout/stderr captured, and a couple of cases
 * spawn `node --import tsx src/cli/main.ts` to prove the binary works end to end (exit codes, stdin).
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CommanderError, type Command } from 'commander';
import { buildProgram } from '../../src/cli/main';
import { startTestServer, type TestServer } from '../helpers/server';

const ROOT = path.resolve(__dirname, '../..');

let s: TestServer;
let server: http.Server;
let url: string;

beforeAll(async () => {
  s = await startTestServer();
  server = http.createServer(s.m.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await s.stop();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** commander's exitOverride is inherited only by commands created after it is set, so set it on all. */
function exitOverrideAll(cmd: Command): Command {
  cmd.exitOverride();
  for (const sub of cmd.commands) exitOverrideAll(sub);
  return cmd;
}

/**
 * Runs `mooring <args>` in-process the way src/cli/main.ts's main() does (an error becomes
 * `mooring: <message>` on stderr and exit code 1), with --url and --token added unless `auth` is false.
 */
async function run(args: string[], { auth = true }: { auth?: boolean } = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const outSpy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const errSpy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  let code = 0;
  try {
    const argv = ['node', 'mooring', ...args, ...(auth ? ['--url', url, '--token', s.adminToken] : [])];
    await exitOverrideAll(buildProgram()).parseAsync(argv);
    // Commands that report a failure without throwing set the exit code, as main() would exit with.
    code = Number(process.exitCode ?? 0);
    process.exitCode = undefined;
  } catch (err) {
    if (err instanceof CommanderError) code = err.exitCode;
    else {
      stderr += `mooring: ${(err as Error).message}\n`;
      code = 1;
    }
  } finally {
    outSpy.mockRestore();
    errSpy.mockRestore();
  }
  return { code, stdout, stderr };
}

/** Runs the real binary from source in a child process. */
function spawnCli(args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, MOORING_URL: url, MOORING_TOKEN: s.adminToken, ...opts.env };
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}

/** The value of `key:` in a key: value block. */
function field(text: string, key: string): string {
  const m = new RegExp(`^${key}:\\s+(.*)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${key}: in\n${text}`);
  return m[1]!.trim();
}

describe('devices', () => {
  it('lists devices as an aligned table, filters, and pages', async () => {
    const a = (await s.device({ platform: 'android', name: 'Pixel of Ana' })).device;
    const w = (await s.device({ platform: 'windows', last_seen_at: new Date('2026-01-02T03:04:05Z') })).device;

    const all = await run(['devices', 'list']);
    expect(all.code).toBe(0);
    const lines = all.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+PLATFORM\s+STATUS\s+NAME\s+SERIAL\s+LAST SEEN$/);
    const rowA = lines.find((l) => l.startsWith(a.id))!;
    const rowW = lines.find((l) => l.startsWith(w.id))!;
    expect(rowA).toMatch(new RegExp(`^${a.id}\\s+android\\s+enrolled\\s+Pixel of Ana\\s+${a.serial_number}\\s+never$`));
    expect(rowW).toMatch(new RegExp(`^${w.id}\\s+windows\\s+enrolled\\s+-\\s+${w.serial_number}\\s+2026-01-02 03:04:05Z$`));
    // aligned: the PLATFORM column starts at the same offset on every line
    expect(new Set(lines.map((l) => l.search(/(PLATFORM|android|windows)/))).size).toBe(1);

    const windows = await run(['devices', 'list', '--platform', 'windows', '--json']);
    const page = JSON.parse(windows.stdout) as { items: Array<{ id: string; platform: string }>; next_cursor: string | null };
    expect(page.items.map((d) => d.id)).toContain(w.id);
    expect(page.items.every((d) => d.platform === 'windows')).toBe(true);

    const search = await run(['devices', 'list', '--q', 'Pixel of Ana']);
    expect(search.stdout).toContain(a.id);
    expect(search.stdout).not.toContain(w.id);

    const first = await run(['devices', 'list', '--limit', '1']);
    expect(first.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(first.stderr).toMatch(/more devices: use --all, or --cursor \S+ for the next page/);

    const every = await run(['devices', 'list', '--limit', '1', '--all', '--json']);
    const ids = (JSON.parse(every.stdout) as { items: Array<{ id: string }> }).items.map((d) => d.id);
    expect(ids).toEqual(expect.arrayContaining([a.id, w.id]));
    expect(every.stderr).toBe('');
  });

  it('shows one device as a key: value block, or as JSON', async () => {
    const { device } = await s.device({ model: 'Pixel 9', os_version: '16', inventory: { battery_level: 0.8 } });
    const text = await run(['devices', 'show', device.id]);
    expect(text.code).toBe(0);
    expect(field(text.stdout, 'id')).toBe(device.id);
    expect(field(text.stdout, 'platform')).toBe('android');
    expect(field(text.stdout, 'serial_number')).toBe(device.serial_number);
    expect(field(text.stdout, 'model')).toBe('Pixel 9');
    expect(field(text.stdout, 'last_seen_at')).toBe('never');
    expect(text.stdout).toMatch(/^inventory:\n {2}battery_level:\s+0\.8$/m);

    const raw = await run(['devices', 'show', device.id, '--json']);
    expect(JSON.parse(raw.stdout)).toMatchObject({ id: device.id, model: 'Pixel 9', inventory: { battery_level: 0.8 } });
  });

  it('reports an unknown device with its code and exit code 1', async () => {
    const id = crypto.randomUUID();
    const r = await run(['devices', 'show', id]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`mooring: no device with id ${id} (device_not_found)\n`);
  });
});

describe('commands', () => {
  it('sends to one device, shows, lists and cancels the command', async () => {
    const { device } = await s.device();
    const sent = await run(['commands', 'send', device.id, '--type', 'lock', '--params', '{"message":"call IT"}', '--expires-in', '3600']);
    expect(sent.code).toBe(0);
    const id = field(sent.stdout, 'id');
    expect(field(sent.stdout, 'device_id')).toBe(device.id);
    expect(field(sent.stdout, 'type')).toBe('lock');
    expect(field(sent.stdout, 'status')).toBe('queued');

    const shown = await run(['commands', 'show', id]);
    expect(field(shown.stdout, 'params')).toBe('{"message":"call IT"}');
    expect(field(shown.stdout, 'status')).toBe('queued');
    expect(field(shown.stdout, 'expires_at')).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$/);
    const json = JSON.parse((await run(['commands', 'show', id, '--json'])).stdout) as { id: string; params: unknown };
    expect(json).toMatchObject({ id, params: { message: 'call IT' } });

    const listed = await run(['commands', 'list', device.id]);
    expect(listed.stdout).toMatch(/^ID\s+TYPE\s+STATUS\s+CREATED\s+FINISHED$/m);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+lock\\s+queued\\s+\\S+ \\S+\\s+-$`, 'm'));

    const canceled = await run(['commands', 'cancel', id]);
    expect(canceled.code).toBe(0);
    expect(canceled.stdout).toBe(`canceled lock command ${id} for device ${device.id}\n`);
    expect(field((await run(['commands', 'show', id])).stdout, 'status')).toBe('canceled');

    const again = await run(['commands', 'cancel', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^mooring: command \S+ is canceled and can no longer be canceled \(command_not_cancelable\)\n$/);
  });

  it('returns the first command for a repeated idempotency key', async () => {
    const { device } = await s.device();
    const args = ['commands', 'send', device.id, '--type', 'device_info', '--idempotency-key', `k-${crypto.randomUUID()}`];
    const one = field((await run(args)).stdout, 'id');
    const two = field((await run(args)).stdout, 'id');
    expect(two).toBe(one);
  });

  it('sends in bulk to several ids and reports each rejected id with its code', async () => {
    const d1 = (await s.device()).device;
    const d2 = (await s.device()).device;
    const unknown = crypto.randomUUID();
    const r = await run(['commands', 'send', d1.id, d2.id, unknown, '--type', 'restart']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^batch \S+: 2 accepted, 1 rejected\n/);
    expect(r.stdout).toMatch(new RegExp(`^ {2}${unknown}\\s+device_not_found\\s+no device with id ${unknown}$`, 'm'));
    expect((await run(['commands', 'list', d1.id])).stdout).toMatch(/\srestart\s+queued\s/);

    const raw = JSON.parse((await run(['commands', 'send', d1.id, unknown, '--type', 'device_info', '--json'])).stdout) as {
      accepted: string[];
      rejected: Array<{ device_id: string; code: string }>;
    };
    expect(raw.accepted).toEqual([d1.id]);
    expect(raw.rejected).toEqual([expect.objectContaining({ device_id: unknown, code: 'device_not_found' })]);
  });

  it('reads device ids from --ids-file (always bulk, comments and blank lines skipped)', async () => {
    const d1 = (await s.device()).device;
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-cli-')), 'ids.txt');
    fs.writeFileSync(file, `# devices to restart\n${d1.id}\n\n`);
    const r = await run(['commands', 'send', '--ids-file', file, '--type', 'restart']);
    expect(r.stdout).toMatch(/^batch \S+: 1 accepted, 0 rejected\n$/);
    fs.rmSync(path.dirname(file), { recursive: true, force: true });

    const missing = await run(['commands', 'send', '--ids-file', '/nonexistent/ids.txt', '--type', 'restart']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^mooring: cannot read --ids-file \/nonexistent\/ids.txt: ENOENT/);
  });

  it('prints each validation error path', async () => {
    const { device } = await s.device();
    const r = await run(['commands', 'send', device.id, '--type', 'self_destruct']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mooring: the request body is not valid \(validation_failed\)\n {2}body\.type: .+\n$/);
  });

  it('refuses bad option values before calling the server', async () => {
    const r = await run(['commands', 'send', crypto.randomUUID(), '--type', 'lock', '--params', '[1]']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("option '--params <json>' argument '[1]' is invalid. must be a JSON object");
    const limit = await run(['devices', 'list', '--limit', '0']);
    expect(limit.code).toBe(1);
    expect(limit.stderr).toContain('limit must be a whole number from 1 to 500');
  });
});

describe('enrollment-token', () => {
  it('creates (printing the token once and the enroll_url), lists and revokes', async () => {
    const created = await run(['enrollment-token', 'create', '--platform', 'apple', '--ownership', 'corporate', '--one-time', '--user', 'ana@example.com']);
    expect(created.code).toBe(0);
    const secret = field(created.stdout, 'token');
    const id = field(created.stdout, 'id');
    expect(secret.length).toBeGreaterThan(10);
    expect(field(created.stdout, 'enroll_url')).toContain(`/enroll/apple?token=${encodeURIComponent(secret)}`);
    expect(field(created.stdout, 'uses')).toBe('one time');
    expect(created.stdout).toContain('shown only now');

    const listed = await run(['enrollment-token', 'list']);
    expect(listed.stdout).toMatch(/^ID\s+PLATFORM\s+HINT\s+OWNERSHIP\s+USER\s+USES\s+EXPIRES\s+STATE$/m);
    expect(listed.stdout).toMatch(new RegExp(`^${id}\\s+apple\\s+…\\S+\\s+corporate\\s+ana@example.com\\s+0/1\\s+\\S+ \\S+\\s+active$`, 'm'));
    expect(listed.stdout).not.toContain(secret);

    const revoked = await run(['enrollment-token', 'revoke', id]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^revoked apple enrollment token ${id} \\(…\\S+\\)\\n$`));
    expect((await run(['enrollment-token', 'list', '--platform', 'apple'])).stdout).toMatch(new RegExp(`^${id}\\s.*\\srevoked$`, 'm'));
    expect(field((await run(['enrollment-token', 'show', id])).stdout, 'state')).toBe('revoked');
  });

  it('creates a never-expiring token with --json and a use limit', async () => {
    const r = await run(['enrollment-token', 'create', '--platform', 'windows', '--expires-in', 'never', '--max-uses', '3', '--json']);
    const token = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(token).toMatchObject({ platform: 'windows', expires_at: null, max_uses: 3, uses: 0 });
    expect(typeof token.token).toBe('string');
    expect(token.enroll_url).toBeUndefined();
  });

  it('creates a token that asks for a device category', async () => {
    const cat = await s.api.post('/api/v1/device-categories').send({ name: 'Lab benches' }).expect(201);
    const r = await run(['enrollment-token', 'create', '--platform', 'apple', '--category-id', cat.body.id, '--ask-category', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ platform: 'apple', category_id: cat.body.id, category_choice: true });
  });

  it('reports an unknown token with its code', async () => {
    const r = await run(['enrollment-token', 'revoke', crypto.randomUUID()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\(enrollment_token_not_found\)\n$/);
  });
});

describe('connection and auth', () => {
  it('says how to supply a token when there is none', async () => {
    const saved = { MOORING_TOKEN: process.env.MOORING_TOKEN, MOORING_ADMIN_TOKEN: process.env.MOORING_ADMIN_TOKEN };
    delete process.env.MOORING_TOKEN;
    delete process.env.MOORING_ADMIN_TOKEN;
    try {
      const r = await run(['devices', 'list', '--url', url], { auth: false });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^mooring: no API token: pass --token <token> or set MOORING_TOKEN/);
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    }
  });

  it('reports a refused token as unauthorized', async () => {
    const r = await run(['devices', 'list', '--url', url, '--token', 'mr_not_a_token'], { auth: false });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\(unauthorized\)\n$/);
    expect(r.stderr).toContain('--token');
  });

  it('reports a refused connection with a hint', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await run(['devices', 'list', '--url', `http://127.0.0.1:${port}`, '--token', s.adminToken], { auth: false });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is \`mooring serve\` running at http://127.0.0.1:${port}?`);
  });
});

describe('help', () => {
  it.each([
    [['devices', 'list'], 'mooring devices list --platform apple --status enrolled'],
    [['devices', 'show'], '$ mooring devices show '],
    [['commands', 'send'], '--ids-file - --type device_info'],
    [['commands', 'cancel'], '$ mooring commands cancel '],
    [['enrollment-token', 'create'], 'mooring enrollment-token create --platform apple'],
    [['enrollment-token', 'revoke'], '$ mooring enrollment-token revoke '],
  ])('%j --help describes the options and shows an example', async (cmd, example) => {
    const r = await run([...cmd, '--help'], { auth: false });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: mooring ${cmd.join(' ')}`);
    expect(r.stdout).toContain('--url <url>');
    expect(r.stdout).toContain('--token <token>');
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain(example);
  });
});

describe('imports', () => {
  const fixture = (name: string) => path.join(ROOT, 'fixtures/governance', name);

  it('imports corporate serials, dry run first, and prints what it did', async () => {
    const dry = await run(['corporate-identifiers', 'import', fixture('corporate-serial.valid.csv'), '--type', 'serial', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^would import \d+, overwrote 0, unchanged 0, skipped 0\n/);
    expect(Number((await s.m.db('corporate_identifiers').count({ n: '*' }).first())!.n)).toBe(0);
    const real = await run(['corporate-ids', 'import', fixture('corporate-serial.valid.csv'), '--type', 'serial']);
    expect(real.code).toBe(0);
    const imported = Number(/^imported (\d+)/.exec(real.stdout)![1]);
    expect(imported).toBeGreaterThan(0);
    expect(Number((await s.m.db('corporate_identifiers').count({ n: '*' }).first())!.n)).toBe(imported);
  });

  it('prints each row problem of an invalid file, imports nothing, and exits 1', async () => {
    const before = Number((await s.m.db('corporate_identifiers').count({ n: '*' }).first())!.n);
    const r = await run(['corporate-identifiers', 'import', fixture('corporate-serial.errors.csv'), '--type', 'serial']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^row 1: error header_not_allowed: /m);
    expect(r.stderr).toMatch(/^row \d+: error serial_has_dot: /m);
    expect(r.stderr).toMatch(/^the file has \d+ problems; nothing was imported/m);
    expect(Number((await s.m.db('corporate_identifiers').count({ n: '*' }).first())!.n)).toBe(before);
  });

  it('imports pre-approved devices, which then appear as pre_approved devices', async () => {
    const r = await run(['preapproved-devices', 'import', fixture('preapproved.valid.csv')]);
    expect(r.stderr).toMatch(/^uploading .*preapproved\.valid\.csv/);
    expect(r.code).toBe(0);
    const n = Number(/^imported (\d+) devices; users created (\d+)/.exec(r.stdout)![1]);
    expect(n).toBeGreaterThan(0);
    const listed = await s.api.get('/api/v1/devices').query({ status: 'pre_approved', limit: 100 }).expect(200);
    expect(listed.body.items).toHaveLength(n);
  });

  it('says when the file is missing', async () => {
    const r = await run(['preapproved', 'import', fixture('no-such.csv')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no such file');
  });
});

describe('the binary (child process)', () => {
  it('reads ids from stdin, uses MOORING_URL and MOORING_TOKEN, exits 0', async () => {
    const d1 = (await s.device()).device;
    const unknown = crypto.randomUUID();
    const r = await spawnCli(['commands', 'send', '--ids-file', '-', '--type', 'device_info'], { stdin: `${d1.id}\n${unknown}\n` });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^batch \S+: 1 accepted, 1 rejected\n/);
    expect(r.stdout).toMatch(new RegExp(`${unknown}\\s+device_not_found`));
  });

  it('exits 1 with `mooring: <detail> (<code>)` on an API error', async () => {
    const id = crypto.randomUUID();
    const r = await spawnCli(['commands', 'show', id]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`mooring: no command with id ${id} (command_not_found)\n`);
  });
});
