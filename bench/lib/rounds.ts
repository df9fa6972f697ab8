/** The phase loop the platform benches share: rounds until enough round time is measured, timing only each round's requests. */
import { performance } from 'node:perf_hooks';

/** How long a phase runs: `seconds` of measured round time, or `maxRounds`, whichever comes first. */
export interface PhaseLimits {
  seconds: number;
  maxRounds: number;
}

export interface RoundTally {
  measuredMs: number;
  rounds: number;
  /** Latencies of the jobs that succeeded. */
  latencies: number[];
  errors: number;
}

/** Plays rounds until the limits (or until a round answers undefined: nothing left to play). */
export async function playRounds<J extends { ms: number }>(
  limits: PhaseLimits,
  playRound: () => Promise<{ elapsedMs: number; results: J[] } | undefined>,
  ok: (job: J) => boolean,
): Promise<RoundTally> {
  const tally: RoundTally = { measuredMs: 0, rounds: 0, latencies: [], errors: 0 };
  while (tally.measuredMs < limits.seconds * 1000 && tally.rounds < limits.maxRounds) {
    const r = await playRound();
    if (!r) break;
    tally.measuredMs += r.elapsedMs;
    tally.rounds += 1;
    for (const res of r.results) {
      if (ok(res)) tally.latencies.push(res.ms);
      else tally.errors += 1;
    }
  }
  return tally;
}

/** The main thread's event-loop use and this process's CPU, summed over the timed parts passed to `measure`. */
export class ProcessMeter {
  #elu = { idle: 0, active: 0 };
  cpuMicros = 0;

  async measure<T>(timedPart: () => Promise<T>): Promise<T> {
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    try {
      return await timedPart();
    } finally {
      const cpu = process.cpuUsage(cpu0);
      this.cpuMicros += cpu.user + cpu.system;
      const d = performance.eventLoopUtilization(elu0);
      this.#elu = { idle: this.#elu.idle + d.idle, active: this.#elu.active + d.active };
    }
  }

  /** Share of the event loop busy during the measured parts. */
  get loopShare(): number {
    return this.#elu.active / (this.#elu.active + this.#elu.idle || 1);
  }
}
