/** Every REPORT.md follows one rule: a generated section between markers is replaced, hand-written text around it is kept. */
import fs from 'node:fs';

export function writeSection(file: string, start: string, end: string, header: string, body: string): void {
  const section = `${start}\n${body}\n${end}`;
  const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : header;
  const from = current.indexOf(start);
  const to = current.indexOf(end);
  const next = from >= 0 && to > from ? current.slice(0, from) + section + current.slice(to + end.length) : `${current.trimEnd()}\n\n${section}\n`;
  fs.writeFileSync(file, next);
}

export function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
