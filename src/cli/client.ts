/**
 * Admin API client commands: `devices`, `commands` and `enrollment-token`. Each one calls the admin
 * REST API over HTTP (see src/admin/routes) with an API token, so it works from any machine that can
 * reach the server. Human output is plain text; `--json` prints the API's own answer.
 */
import fs from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig, readClientEnv } from '../config';
import type { z } from 'zod';
import type { BulkResultSchema, CommandSchema, CreatedEnrollmentTokenSchema, DeviceSchema } from '../admin/schemas';
import { COMMAND_TYPES } from '../core/command-types';
import { checkEnrollmentCname, formatCnameReport, type CnameReport } from '../windows/cname-check';
import { DEVICE_STATUSES, OWNERSHIPS, PLATFORMS } from '../core/types';
import { VERSION } from '../main';
import { json, keyValues, table, time } from './format';
import { ApiClient, type Page } from './http-client';
import { registerImports } from './governance';

// The admin API's answers: the same zod schemas the server validates and documents with.
type DeviceJson = z.input<typeof DeviceSchema>;
type CommandJson = z.input<typeof CommandSchema>;
type BulkResultJson = z.input<typeof BulkResultSchema>;
type EnrollmentTokenJson = z.input<typeof CreatedEnrollmentTokenSchema>;

// ---- connection (--url, --token) ----

interface ConnectionOptions {
  url?: string;
  token?: string;
}

interface ListOptions extends ConnectionOptions {
  limit?: number;
  cursor?: string;
  all?: boolean;
  json?: boolean;
}

/** Adds the options every client command shares. */
function withConnection(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'server URL (default: $MOORING_URL, else http://localhost:$MOORING_HTTP_PORT or :8080)')
    .option('--token <token>', 'API token (default: $MOORING_TOKEN, else $MOORING_ADMIN_TOKEN)');
}

/**
 * The API client for one invocation. Like the server, this reads ./.env if present, so on the server
 * machine MOORING_HTTP_PORT and MOORING_ADMIN_TOKEN from there are enough.
 */
export function connect(opts: ConnectionOptions): ApiClient {
  let httpPort = 8080;
  try {
    httpPort = loadConfig().httpPort;
  } catch {
    // A bad server-side setting is not the client's concern; the default port will do.
  }
  const env = readClientEnv();
  // An empty variable counts as unset.
  const url = opts.url || env.url || `http://localhost:${httpPort}`;
  const token = opts.token || env.token;
  if (!token) {
    throw new Error(
      'no API token: pass --token <token> or set MOORING_TOKEN (MOORING_ADMIN_TOKEN works too); ' +
        '`mooring token create --role operator` on the server makes one',
    );
  }
  return new ApiClient({ url, token, userAgent: `mooring-cli/${VERSION}` });
}

const out = (text: string): void => void process.stdout.write(text);
const note = (text: string): void => void process.stderr.write(text);
const seg = (id: string): string => encodeURIComponent(id);

// ---- argument parsers ----

function integer(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

function jsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`not valid JSON (${(err as Error).message}); e.g. '{"message":"call IT"}'`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new InvalidArgumentError('must be a JSON object, e.g. \'{"message":"call IT"}\'');
  return parsed as Record<string, unknown>;
}

function secondsOrNever(value: string): number | 'never' {
  if (value === 'never') return 'never';
  return integer('expires-in', 60, 10 * 365 * 24 * 3600)(value);
}

function listOptions(cmd: Command, noun: string): Command {
  return cmd
    .option('--limit <n>', `${noun} per page, 1-500 (default 50; 500 with --all)`, integer('limit', 1, 500))
    .option('--cursor <cursor>', 'start at this page (the next_cursor a previous page printed)')
    .option('--all', 'follow the pages and list every one')
    .option('--json', 'print the API answer as JSON');
}

/** One page, or with --all every page; says on stderr when more pages are left. */
async function fetchList<T>(api: ApiClient, path: string, query: Record<string, string | undefined>, opts: ListOptions, noun: string): Promise<Page<T>> {
  if (opts.all) {
    const items = await api.all<T>(path, { ...query, limit: opts.limit ?? 500, cursor: opts.cursor });
    return { items, next_cursor: null };
  }
  const page = await api.get<Page<T>>(path, { ...query, limit: opts.limit, cursor: opts.cursor });
  if (page.next_cursor && !opts.json) note(`more ${noun}: use --all, or --cursor ${page.next_cursor} for the next page\n`);
  return page;
}

/** Breaks `text` at spaces into lines of at most `width` characters, each starting with `indent`. */
function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines.join('\n');
}

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => (l.startsWith('#') ? `  ${l}` : `  $ ${l}`)).join('\n')}\n`;
}

// ---- devices ----

function deviceTable(devices: DeviceJson[]): string {
  if (devices.length === 0) return 'no devices\n';
  return table(
    ['id', 'platform', 'status', 'name', 'serial', 'last seen'],
    devices.map((d) => [d.id, d.platform, d.status, d.name ?? '-', d.serial_number ?? d.udid ?? d.imei ?? d.hardware_id ?? '-', time(d.last_seen_at, 'never')]),
  );
}

function deviceBlock(d: DeviceJson): string {
  let text = keyValues([
    ['id', d.id],
    ['platform', d.platform],
    ['status', d.status],
    ['ownership', d.ownership],
    ['mode', d.mode],
    ['supervised', d.supervised],
    ['name', d.name],
    ['serial_number', d.serial_number],
    ['udid', d.udid],
    ['imei', d.imei],
    ['hardware_id', d.hardware_id],
    ['model', d.model],
    ['manufacturer', d.manufacturer],
    ['os_version', d.os_version],
    ['user', d.user],
    ['category', d.category],
    ['enrolled_at', d.enrolled_at],
    ['last_seen_at', d.last_seen_at ?? 'never'],
    ['created_at', d.created_at],
  ]);
  const inventory = Object.entries(d.inventory ?? {});
  if (inventory.length === 0) return text + 'inventory:      -\n';
  text += 'inventory:\n';
  text += keyValues(inventory)
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
  return text;
}

function registerDevices(program: Command): void {
  const devices = program.command('devices').description('list and show enrolled devices (admin API)');

  withConnection(
    listOptions(
      devices
        .command('list')
        .alias('ls')
        .description('list devices, newest first')
        .addOption(new Option('--platform <platform>', 'only devices of this platform').choices(PLATFORMS))
        .addOption(new Option('--status <status>', 'only devices in this status').choices(DEVICE_STATUSES))
        .option('--q <text>', 'search name, serial number, UDID, IMEI, hardware id, model and user'),
      'devices',
    ),
  )
    .addHelpText(
      'after',
      examples(
        'mooring devices list',
        'mooring devices list --platform apple --status enrolled',
        'mooring devices list --q C02XK1 --url http://mdm.internal:8080',
        'mooring devices list --all --json > devices.json',
      ),
    )
    .action(async (opts: ListOptions & { platform?: string; status?: string; q?: string }) => {
      const api = connect(opts);
      const page = await fetchList<DeviceJson>(api, '/devices', { platform: opts.platform, status: opts.status, q: opts.q }, opts, 'devices');
      out(opts.json ? json(page) : deviceTable(page.items));
    });

  withConnection(
    devices
      .command('show')
      .description('show one device: identifiers, state and the last inventory it reported')
      .argument('<id>', 'device id (UUID)')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText('after', examples('mooring devices show 3f2c9a4e-5b7d-4c1e-9a8b-0d6e2f1a7c3b', 'mooring devices show 3f2c9a4e-5b7d-4c1e-9a8b-0d6e2f1a7c3b --json'))
    .action(async (id: string, opts: ConnectionOptions & { json?: boolean }) => {
      const device = await connect(opts).get<DeviceJson>(`/devices/${seg(id)}`);
      out(opts.json ? json(device) : deviceBlock(device));
    });
}

// ---- commands ----

function finishedAt(c: CommandJson): string | null {
  return c.completed_at ?? c.canceled_at ?? c.expired_at ?? null;
}

function commandBlock(c: CommandJson): string {
  return keyValues([
    ['id', c.id],
    ['device_id', c.device_id],
    ['type', c.type],
    ['status', c.status],
    ...(c.effect ? ([['effect', c.effect]] as Array<[string, unknown]>) : []),
    ['params', Object.keys(c.params ?? {}).length ? c.params : null],
    ['priority', c.priority],
    ['attempts', c.attempts],
    ['batch_id', c.batch_id],
    ['idempotency_key', c.idempotency_key],
    ['requested_by', c.requested_by],
    ['created_at', c.created_at],
    ['sent_at', c.sent_at],
    ['not_now_at', c.not_now_at],
    ['completed_at', c.completed_at],
    ['canceled_at', c.canceled_at],
    ['expired_at', c.expired_at],
    ['expires_at', c.expires_at],
    ['result', c.result],
    ['error', c.error],
  ]);
}

/** What `commands send` prints for one device: enough to follow the command up. */
function queuedBlock(c: CommandJson): string {
  return keyValues([
    ['id', c.id],
    ['device_id', c.device_id],
    ['type', c.type],
    ['status', c.status],
    ...(c.effect ? ([['effect', c.effect]] as Array<[string, unknown]>) : []),
    ...(Object.keys(c.params ?? {}).length ? ([['params', c.params]] as Array<[string, unknown]>) : []),
    ...(c.idempotency_key ? ([['idempotency_key', c.idempotency_key]] as Array<[string, unknown]>) : []),
    ['expires_at', c.expires_at],
  ]);
}

function commandTable(commands: CommandJson[]): string {
  if (commands.length === 0) return 'no commands\n';
  return table(
    ['id', 'type', 'status', 'created', 'finished'],
    commands.map((c) => [c.id, c.type, c.status, time(c.created_at), time(finishedAt(c))]),
  );
}

function bulkSummary(r: BulkResultJson): string {
  let text = `batch ${r.batch_id}: ${r.accepted.length} accepted, ${r.rejected.length} rejected\n`;
  if (r.rejected.length > 0) {
    text += 'rejected:\n';
    text += table(
      ['device', 'code', 'detail'],
      r.rejected.map((x) => [x.device_id, x.code, x.detail]),
    )
      .split('\n')
      .map((l) => (l ? `  ${l}` : l))
      .join('\n');
  }
  return text;
}

/** One id per line; blank lines and lines starting with # are skipped. `-` reads stdin. */
async function readIdsFile(file: string): Promise<string[]> {
  let text: string;
  if (file === '-') {
    if (process.stdin.isTTY) note('reading device ids from stdin, one per line (Ctrl-D to finish)\n');
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    try {
      text = await fs.promises.readFile(file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read --ids-file ${file}: ${(err as Error).message}`);
    }
  }
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

interface SendOptions extends ConnectionOptions {
  type: string;
  params?: Record<string, unknown>;
  idempotencyKey?: string;
  expiresIn?: number;
  priority?: number;
  idsFile?: string;
  json?: boolean;
}

function registerCommands(program: Command): void {
  const commands = program.command('commands').description('queue, inspect and cancel device commands (admin API)');

  withConnection(
    commands
      .command('send')
      .description('queue a command for one device, or for many in one bulk request (several ids, or --ids-file)')
      .argument('[device-id...]', 'device ids (UUIDs); two or more make a bulk request')
      .requiredOption('--type <type>', 'neutral command type, e.g. lock, restart, device_info, wipe')
      .option('--params <json>', 'type-specific parameters as a JSON object, e.g. \'{"message":"call IT"}\'', jsonObject)
      .option('--idempotency-key <key>', 'a repeat with the same key returns the first command (or batch) instead of queuing again')
      .option('--expires-in <seconds>', 'seconds until the command expires undelivered (60 or more; default: server setting)', integer('expires-in', 60, 365 * 24 * 3600))
      .option('--priority <n>', 'higher is delivered first, -100 to 100 (default 0)', integer('priority', -100, 100))
      .option('--ids-file <file>', 'read device ids from a file, one per line (- for stdin); always a bulk request')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText(
      'after',
      `\nCommand types (a platform refuses what it cannot do with command_not_permitted):\n${wrap(COMMAND_TYPES.join(', '), 78, '  ')}\n` +
      examples(
        `mooring commands send 3f2c9a4e-5b7d-4c1e-9a8b-0d6e2f1a7c3b --type lock --params '{"message":"Return to IT"}'`,
        'mooring commands send 3f2c9a4e-5b7d-4c1e-9a8b-0d6e2f1a7c3b 8d1e0b7a-2c4f-4e59-b6a3-9f0c1d2e3a4b --type restart',
        "mooring devices list --platform android --all --json | jq -r '.items[].id' | mooring commands send --ids-file - --type device_info",
        '# bulk output: the accepted count, then each rejected device id with its code (device_not_found, command_not_permitted, ...)',
      ),
    )
    .action(async (ids: string[], opts: SendOptions) => {
      const deviceIds = [...ids, ...(opts.idsFile ? await readIdsFile(opts.idsFile) : [])];
      if (deviceIds.length === 0) throw new Error('no device ids: give one or more ids, or --ids-file <file>');
      const request = {
        type: opts.type,
        ...(opts.params ? { params: opts.params } : {}),
        ...(opts.idempotencyKey ? { idempotency_key: opts.idempotencyKey } : {}),
        ...(opts.expiresIn !== undefined ? { expires_in: opts.expiresIn } : {}),
        ...(opts.priority !== undefined ? { priority: opts.priority } : {}),
      };
      const api = connect(opts);
      if (deviceIds.length === 1 && !opts.idsFile) {
        const command = await api.post<CommandJson>(`/devices/${seg(deviceIds[0]!)}/commands`, request);
        out(opts.json ? json(command) : queuedBlock(command));
        return;
      }
      const result = await api.post<BulkResultJson>('/commands', { ...request, device_ids: deviceIds });
      out(opts.json ? json(result) : bulkSummary(result));
    });

  withConnection(
    commands
      .command('show')
      .description('show one command: status, timestamps, result and error')
      .argument('<command-id>', 'command id (UUID)')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText('after', examples('mooring commands show 9b7e6d5c-4a3b-4c2d-8e1f-0a9b8c7d6e5f'))
    .action(async (id: string, opts: ConnectionOptions & { json?: boolean }) => {
      const command = await connect(opts).get<CommandJson>(`/commands/${seg(id)}`);
      out(opts.json ? json(command) : commandBlock(command));
    });

  withConnection(
    listOptions(commands.command('list').alias('ls').description("list a device's commands, newest first").argument('<device-id>', 'device id (UUID)'), 'commands'),
  )
    .addHelpText('after', examples('mooring commands list 3f2c9a4e-5b7d-4c1e-9a8b-0d6e2f1a7c3b', 'mooring commands list 3f2c9a4e-5b7d-4c1e-9a8b-0d6e2f1a7c3b --all --json'))
    .action(async (deviceId: string, opts: ListOptions) => {
      const page = await fetchList<CommandJson>(connect(opts), `/devices/${seg(deviceId)}/commands`, {}, opts, 'commands');
      out(opts.json ? json(page) : commandTable(page.items));
    });

  withConnection(
    commands
      .command('cancel')
      .description('cancel a command the device has not been sent yet (fails with command_not_cancelable once sent)')
      .argument('<command-id>', 'command id (UUID)')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText('after', examples('mooring commands cancel 9b7e6d5c-4a3b-4c2d-8e1f-0a9b8c7d6e5f'))
    .action(async (id: string, opts: ConnectionOptions & { json?: boolean }) => {
      const command = await connect(opts).delete<CommandJson>(`/commands/${seg(id)}`);
      out(opts.json ? json(command) : `canceled ${command.type} command ${command.id} for device ${command.device_id}\n`);
    });
}

// ---- enrollment tokens ----

function tokenState(t: EnrollmentTokenJson, now = Date.now()): string {
  if (t.revoked_at) return 'revoked';
  if (t.expires_at && Date.parse(t.expires_at) <= now) return 'expired';
  if ((t.one_time && t.uses >= 1) || (t.max_uses !== null && t.uses >= t.max_uses)) return 'used up';
  return 'active';
}

function uses(t: EnrollmentTokenJson): string {
  if (t.one_time) return `${t.uses}/1`;
  return t.max_uses === null ? String(t.uses) : `${t.uses}/${t.max_uses}`;
}

function tokenTable(tokens: EnrollmentTokenJson[]): string {
  if (tokens.length === 0) return 'no enrollment tokens\n';
  return table(
    ['id', 'platform', 'hint', 'ownership', 'user', 'uses', 'expires', 'state'],
    tokens.map((t) => [t.id, t.platform, `…${t.hint}`, t.ownership, t.user ?? '-', uses(t), time(t.expires_at, 'never'), tokenState(t)]),
  );
}

function tokenBlock(t: EnrollmentTokenJson): string {
  return keyValues([
    ['id', t.id],
    ['platform', t.platform],
    ['hint', `…${t.hint}`],
    ['state', tokenState(t)],
    ['ownership', t.ownership],
    ['allow_personal_usage', t.allow_personal_usage],
    ['policy_id', t.policy_id],
    ['user', t.user],
    ['one_time', t.one_time],
    ['uses', uses(t)],
    ['expires_at', t.expires_at ?? 'never'],
    ['revoked_at', t.revoked_at],
    ['created_at', t.created_at],
  ]);
}

function createdTokenText(t: EnrollmentTokenJson): string {
  let text = keyValues([
    ['token', t.token],
    ...(t.enroll_url ? ([['enroll_url', t.enroll_url]] as Array<[string, unknown]>) : []),
    ['id', t.id],
    ['platform', t.platform],
    ['ownership', t.ownership],
    ['user', t.user],
    ['uses', t.one_time ? 'one time' : t.max_uses === null ? 'unlimited' : `up to ${t.max_uses}`],
    ['expires_at', t.expires_at ?? 'never'],
  ]);
  text += '\nThe token is shown only now; Mooring keeps only a hash of it.\n';
  if (t.platform === 'apple' && t.enroll_url) text += 'Apple: open enroll_url on the device to download and install the enrollment profile.\n';
  if (t.platform === 'windows') text += "Windows: in Access work or school, enroll with any email address of your domain and this token as the password.\n";
  return text;
}

interface CreateTokenOptions extends ConnectionOptions {
  platform: string;
  ownership?: string;
  expiresIn?: number | 'never';
  oneTime?: boolean;
  maxUses?: number;
  user?: string;
  policyId?: string;
  categoryId?: string;
  askCategory?: boolean;
  allowPersonalUsage?: string;
  json?: boolean;
}

function registerEnrollmentTokens(program: Command): void {
  const tokens = program.command('enrollment-token').alias('enrollment-tokens').description('create, list and revoke enrollment tokens (admin API)');

  withConnection(
    tokens
      .command('create')
      .description('create an enrollment token and print it (the secret is shown only once)')
      .addOption(new Option('--platform <platform>', 'the platform that enrolls with it').choices(PLATFORMS).makeOptionMandatory())
      .addOption(new Option('--ownership <ownership>', 'ownership recorded on devices enrolled with it (default unknown)').choices(OWNERSHIPS))
      .option('--expires-in <seconds|never>', 'seconds until it expires (60 or more), or never (default 30 days)', secondsOrNever)
      .option('--one-time', 'the token works for one enrollment only')
      .option('--max-uses <n>', 'the token works for at most n enrollments', integer('max-uses', 1, 1_000_000))
      .option('--user <user>', 'the user the enrolled devices belong to (e.g. an email address)')
      .option('--policy-id <id>', 'policy to apply to devices enrolled with it (UUID)')
      .option('--category-id <id>', 'device category for devices enrolled with it (UUID)')
      .option('--ask-category', 'the Apple profile page and the Windows sign-in page ask the user for a category')
      .addOption(
        new Option('--allow-personal-usage <value>', 'Android: personal usage on company-owned devices').choices(['allowed', 'disallowed', 'disallowed_userless']),
      )
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText(
      'after',
      examples(
        'mooring enrollment-token create --platform apple',
        'mooring enrollment-token create --platform windows --ownership corporate --expires-in 86400 --one-time',
        'mooring enrollment-token create --platform android --user alice@example.com --max-uses 5 --expires-in never',
        'mooring enrollment-token create --platform apple --user alice@example.com --ask-category',
      ),
    )
    .action(async (opts: CreateTokenOptions) => {
      const body = {
        platform: opts.platform,
        ...(opts.ownership ? { ownership: opts.ownership } : {}),
        ...(opts.expiresIn !== undefined ? { expires_in: opts.expiresIn } : {}),
        ...(opts.oneTime ? { one_time: true } : {}),
        ...(opts.maxUses !== undefined ? { max_uses: opts.maxUses } : {}),
        ...(opts.user ? { user: opts.user } : {}),
        ...(opts.policyId ? { policy_id: opts.policyId } : {}),
        ...(opts.categoryId ? { category_id: opts.categoryId } : {}),
        ...(opts.askCategory ? { category_choice: true } : {}),
        ...(opts.allowPersonalUsage ? { allow_personal_usage: opts.allowPersonalUsage } : {}),
      };
      const token = await connect(opts).post<EnrollmentTokenJson>('/enrollment-tokens', body);
      out(opts.json ? json(token) : createdTokenText(token));
    });

  withConnection(
    listOptions(
      tokens
        .command('list')
        .alias('ls')
        .description('list enrollment tokens, newest first (secrets are never shown again; hint is the last characters)')
        .addOption(new Option('--platform <platform>', 'only tokens for this platform').choices(PLATFORMS)),
      'tokens',
    ),
  )
    .addHelpText('after', examples('mooring enrollment-token list', 'mooring enrollment-token list --platform windows --all'))
    .action(async (opts: ListOptions & { platform?: string }) => {
      const page = await fetchList<EnrollmentTokenJson>(connect(opts), '/enrollment-tokens', { platform: opts.platform }, opts, 'tokens');
      out(opts.json ? json(page) : tokenTable(page.items));
    });

  withConnection(
    tokens
      .command('show')
      .description('show one enrollment token (without its secret)')
      .argument('<id>', 'enrollment token id (UUID)')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText('after', examples('mooring enrollment-token show 5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d'))
    .action(async (id: string, opts: ConnectionOptions & { json?: boolean }) => {
      const token = await connect(opts).get<EnrollmentTokenJson>(`/enrollment-tokens/${seg(id)}`);
      out(opts.json ? json(token) : tokenBlock(token));
    });

  withConnection(
    tokens
      .command('revoke')
      .description('revoke an enrollment token; devices already enrolled with it are not affected')
      .argument('<id>', 'enrollment token id (UUID)')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText('after', examples('mooring enrollment-token revoke 5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d'))
    .action(async (id: string, opts: ConnectionOptions & { json?: boolean }) => {
      const token = await connect(opts).delete<EnrollmentTokenJson>(`/enrollment-tokens/${seg(id)}`);
      out(opts.json ? json(token) : `revoked ${token.platform} enrollment token ${token.id} (…${token.hint})\n`);
    });
}

export function registerClientCommands(program: Command): void {
  registerDevices(program);
  registerCommands(program);
  registerEnrollmentTokens(program);
  registerWindows(program);
  registerImports(program, connect, withConnection, examples);
}

// ---- windows ----

function registerWindows(program: Command): void {
  const windows = program.command('windows').description('Windows enrollment helpers');

  withConnection(
    windows
      .command('cname-check')
      .description('check that EnterpriseEnrollment.<domain> leads Windows devices to this server: DNS, certificate, Discovery.svc')
      .argument('<domain>', 'a UPN suffix users enroll with, e.g. contoso.com')
      .option('--local', 'run the check from this machine (expected host: MOORING_PUBLIC_URL) instead of asking the server')
      .option('--json', 'print the report as JSON'),
  )
    .addHelpText('after', examples('mooring windows cname-check contoso.com', 'mooring windows cname-check contoso.com --local --json'))
    .action(async (domain: string, opts: ConnectionOptions & { local?: boolean; json?: boolean }) => {
      const report = opts.local
        ? await checkEnrollmentCname({ domain, expectedHost: loadConfig().publicUrl.hostname })
        : await connect(opts).get<CnameReport>('/windows/cname-check', { domain });
      out(opts.json ? json(report) : formatCnameReport(report));
      if (!report.ok) process.exitCode = 1;
    });
}
