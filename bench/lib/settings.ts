/** Bench settings from the environment: sizes for a quick try, with the sizes as defaults. */
export function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer (got ${JSON.stringify(raw)})`);
  return n;
}

/** The database a bench runs on, as the operator set it: DATABASE_URL and MOORING_DB_POOL_MAX (unset: the defaults). */
export function databaseSettings(env: NodeJS.ProcessEnv): { databaseUrl?: string; poolMax?: string } {
  return { databaseUrl: env.DATABASE_URL || undefined, poolMax: env.MOORING_DB_POOL_MAX || undefined };
}
