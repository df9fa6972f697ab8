/** The correctness tally every bench's ledger starts from: every problem counted, the first few kept for the report. */
export class ProblemLog {
  problems = 0;
  readonly samples: string[] = [];

  constructor(private readonly keep = 10) {}

  problem(msg: string): void {
    this.problems += 1;
    if (this.samples.length < this.keep) this.samples.push(msg);
  }
}
