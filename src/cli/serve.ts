/**
 * `mooring serve` and `mooring worker`: run the server (and, in embedded mode, the worker in the same
 * process, on a thread of its own unless MOORING_WORKER_THREAD=false) until SIGINT/SIGTERM, then stop
 * in order: listeners (requests in flight finish), workers (jobs in progress finish), queues, database
 * pool, embedded Postgres. A second signal exits at once.
 */
import { loadConfig, type Config } from '../config';
import { createMooring, listen, type Mooring } from '../main';
import type { RunningWorker } from '../worker';

export async function serve(opts: { worker?: boolean }): Promise<void> {
  const config = loadConfig();
  const m = await createMooring(config);
  const runWorker = opts.worker ?? m.embedded;
  let worker: RunningWorker | undefined;
  try {
    const listeners = await listen(m);
    if (runWorker) worker = config.workerThread ? await m.startWorkerThread() : m.startWorker();
    printBanner(m, config, runWorker);
    await untilSignal(m, async () => {
      await listeners.close();
      await worker?.stop();
      await m.stop();
    });
  } catch (err) {
    await worker?.stop().catch(() => undefined);
    await m.stop();
    throw err;
  }
}

export async function runWorker(): Promise<void> {
  const m = await createMooring(loadConfig());
  const worker = m.startWorker();
  process.stdout.write(`Mooring worker running (queues on ${m.queues.kind}). Ctrl-C to stop.\n`);
  await untilSignal(m, async () => {
    await worker.stop();
    await m.stop();
  });
}

function untilSignal(m: Mooring, shutdown: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        m.logger.warn('second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      m.logger.info({ signal }, 'shutting down');
      shutdown()
        .catch((err: unknown) => m.logger.error({ err }, 'error during shutdown'))
        .finally(() => {
          process.stdout.write('Mooring stopped.\n');
          resolve();
        });
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

function printBanner(m: Mooring, config: Config, worker: boolean): void {
  const publicUrl = config.publicUrl.origin;
  const local = `http://localhost:${config.httpPort}`;
  const lines = [
    '',
    `Mooring ${m.embedded ? '(embedded mode: Postgres under ' + config.dataDir + ', queues on Postgres)' : `(queues on ${m.queues.kind})`}`,
    `  device URL (HTTPS):  ${publicUrl}          listening on ${config.bind}:${config.httpsPort}`,
    `  plain HTTP:          ${local}    listening on ${config.bind}:${config.httpPort}`,
    `  admin API:           ${local}/api/v1   (OpenAPI: ${local}/api/v1/openapi.json)`,
    `  health and metrics:  ${local}/healthz  ${local}/readyz  ${local}/metrics`,
    `  CA certificate:      ${config.certsDir}/ca.crt`,
    `  background worker:   ${worker ? (config.workerThread ? 'in this process, on its own thread' : 'in this process') : 'not here: run `mooring worker`'}`,
    '',
  ];
  if (m.newAdminToken) {
    lines.push(
      'First start: an admin API token was created. It is shown only now; keep it safe:',
      '',
      `  MOORING_ADMIN_TOKEN=${m.newAdminToken}`,
      '',
      `  try: curl -H "Authorization: Bearer ${m.newAdminToken}" ${local}/api/v1/devices`,
      '',
    );
  } else if (!config.adminToken) {
    lines.push('Admin API tokens exist already (the first one was printed on first start).', 'Make another with: mooring token create --role admin', '');
  }
  lines.push('Ctrl-C stops everything.', '');
  process.stdout.write(lines.join('\n'));
}
