import { decodeCursor, encodeCursor, toPage } from '../../src/core/pagination';
import { hashSecret, newApiToken, newEnrollmentToken, normalizeEnrollmentToken } from '../../src/core/secrets';
import { MooringError, STATUS_OF } from '../../src/core/errors';
import { PlatformRegistry } from '../../src/core/platforms';
import { uuidv7 } from '../../src/core/ids';
import type { DeviceFacts } from '../../src/core/types';
import { TestPlatformCommands } from '../helpers/test-platform';

describe('cursors', () => {
  it('round-trip the sort key and refuse anything else', () => {
    expect(decodeCursor(encodeCursor(['2026-11-21T00:00:00.000Z', 'abc']), 2)).toEqual(['2026-11-21T00:00:00.000Z', 'abc']);
    expect(() => decodeCursor(encodeCursor([1]), 2)).toThrow(MooringError);
    expect(() => decodeCursor('%%%', 1)).toThrow(/cursor/);
  });

  it('give a next cursor only when a further row exists', () => {
    expect(toPage([1, 2, 3], 2, (n) => [n])).toEqual({ items: [1, 2], next_cursor: encodeCursor([2]) });
    expect(toPage([1, 2], 2, (n) => [n])).toEqual({ items: [1, 2], next_cursor: null });
  });
});

describe('secrets', () => {
  it('makes API tokens with 256 bits and stores only a digest', () => {
    const t = newApiToken();
    expect(t).toMatch(/^mrg_[A-Za-z0-9_-]{43}$/);
    expect(hashSecret(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashSecret(t)).not.toContain(t.slice(4, 12));
  });

  it('makes typeable enrollment tokens and accepts them as people type them', () => {
    const t = newEnrollmentToken();
    expect(t).toMatch(/^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){4}$/);
    expect(normalizeEnrollmentToken(t.toLowerCase().replace(/-/g, ' '))).toBe(t);
    expect(new Set(Array.from({ length: 200 }, newEnrollmentToken)).size).toBe(200);
  });
});

describe('errors', () => {
  it('give every code one HTTP status', () => {
    expect(new MooringError('command_not_permitted', 'no').status).toBe(422);
    expect(Object.values(STATUS_OF).every((s) => s >= 400 && s < 600)).toBe(true);
  });
});

describe('platform registry', () => {
  const device = { platform: 'apple', ownership: 'corporate' } as DeviceFacts;

  it('refuses commands for a platform nobody registered, with the reason', () => {
    const p = new PlatformRegistry().permit(device, 'lock', {});
    expect(p).toEqual({ allowed: false, code: 'command_not_permitted', detail: expect.stringMatching(/apple/), reason: 'no_platform_support' });
  });

  it('asks the registered platform and refuses a second registration', () => {
    const registry = new PlatformRegistry().register(new TestPlatformCommands('apple'));
    expect(registry.permit(device, 'lock', {})).toEqual({ allowed: true });
    expect(() => registry.register(new TestPlatformCommands('apple'))).toThrow(/twice/);
  });
});

describe('uuidv7', () => {
  it('makes RFC 9562 version-7 ids that sort in creation order', () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(uuidv7(Date.UTC(2030, 0, 1)).startsWith('01b8dac5-b400-7')).toBe(true); // the time is the 48-bit prefix
  });
});
