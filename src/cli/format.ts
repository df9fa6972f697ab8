/** Plain-text output for the CLI: aligned tables, `key: value` blocks, and JSON for `--json`. */

/** Columns padded to their widest cell, two spaces apart; the header is upper-cased. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n') + '\n';
}

/** `key: value` lines with the values aligned; nested objects and arrays are shown as compact JSON. */
export function keyValues(entries: Array<[string, unknown]>): string {
  const width = Math.max(0, ...entries.map(([k]) => k.length)) + 1;
  return entries.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${show(v)}`.trimEnd()).join('\n') + '\n';
}

/** One value for humans: `-` for nothing, timestamps without milliseconds, objects as JSON. */
export function show(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (typeof value === 'string') return isIsoTime(value) ? time(value) : value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** An ISO timestamp as `2026-01-31 12:34:56Z`; null as `never` (or the given word). */
export function time(iso: string | null | undefined, none = '-'): string {
  if (!iso) return none;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

function isIsoTime(s: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(s);
}
