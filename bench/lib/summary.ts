/** The console summary every bench ends with: its lines between blank ones, and the same checks line. */

export function printSummary(lines: string[]): void {
  process.stdout.write(['', ...lines, ''].join('\n'));
}

/** `  checks     <okText>`, or the failure count and problems. */
export function checksLine(checks: { ok: boolean; problem_count: number; problems: string[] }, okText: string): string {
  return `  checks     ${checks.ok ? okText : `FAILED (${checks.problem_count}): ${checks.problems.join('; ')}`}`;
}
