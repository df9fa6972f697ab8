/** Progress lines with the time since the bench started, so a slow step is visible while it runs. */
const started = performance.now();

export function progress(message: string): void {
  process.stdout.write(`[bench +${((performance.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}
