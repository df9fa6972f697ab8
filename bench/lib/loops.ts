/**
 * N concurrent loops against one deadline: the shape of many devices polling at once. Every loop is
 * bounded by the deadline, and stops early when its operation says there is nothing left to do.
 */
import { latencyMs, round } from './stats';

export interface LoopStats {
  concurrency: number;
  seconds: number;
  ops: number;
  ops_per_second: number;
  /** Per-operation latency in milliseconds. */
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  /** Loops that ran out of work before the deadline (their rate then under-counts). */
  exhausted_loops: number;
}

/** One operation of loop `worker`; resolves false when that loop has nothing left (not counted). */
export type LoopOp = (worker: number) => Promise<boolean>;

export async function runLoops(concurrency: number, durationMs: number, op: LoopOp): Promise<LoopStats> {
  const latencies: number[] = [];
  let exhausted = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const loop = async (worker: number) => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      if (!(await op(worker))) {
        exhausted += 1;
        return;
      }
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i)));
  const seconds = (performance.now() - start) / 1000;
  return {
    concurrency,
    seconds: round(seconds),
    ops: latencies.length,
    ops_per_second: round(latencies.length / seconds, 1),
    latency_ms: latencyMs(latencies),
    exhausted_loops: exhausted,
  };
}
