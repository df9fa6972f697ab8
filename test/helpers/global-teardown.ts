export default async function globalTeardown(): Promise<void> {
  for (const step of globalThis.__mooringTestTeardown ?? []) await step();
}
