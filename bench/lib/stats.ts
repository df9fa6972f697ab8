/** The few statistics the scenarios report. */

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile; 0 for an empty list. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** The latency block every phase reports, from per-operation milliseconds. */
export function latencyMs(latencies: number[]): { p50: number; p95: number; p99: number; max: number } {
  return {
    p50: round(percentile(latencies, 50)),
    p95: round(percentile(latencies, 95)),
    p99: round(percentile(latencies, 99)),
    max: round(percentile(latencies, 100)),
  };
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Wall-clock seconds an async step takes. */
export async function timed<T>(step: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = performance.now();
  const value = await step();
  return { seconds: (performance.now() - t0) / 1000, value };
}
