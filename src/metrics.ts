/**
 * Prometheus metrics: one registry for the process, served at /metrics. The background worker's thread
 * keeps its own counters (a thread has its own modules); the scrape asks it for them and adds them in.
 */
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'mooring_process_' });

export const httpDuration = new client.Histogram({
  name: 'mooring_http_request_duration_seconds',
  help: 'HTTP request latency by route',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const pushOutcomes = new client.Counter({
  name: 'mooring_push_total',
  help: 'Push attempts by platform and outcome (sent, dead_token, retry, failed, no_provider, no_token)',
  labelNames: ['platform', 'outcome'] as const,
  registers: [registry],
});

export const webhookDeliveries = new client.Counter({
  name: 'mooring_webhook_deliveries_total',
  help: 'Webhook delivery attempts by outcome',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

/** Reports queue depth (waiting, delayed, active, failed) for each queue at scrape time. */
export function registerQueueDepth(queues: Record<string, { getJobCounts(...t: string[]): Promise<Record<string, number>> }>): void {
  registry.removeSingleMetric('mooring_queue_jobs');
  new client.Gauge({
    name: 'mooring_queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      for (const [name, queue] of Object.entries(queues)) {
        try {
          const counts = await queue.getJobCounts('waiting', 'delayed', 'active', 'failed');
          for (const [state, n] of Object.entries(counts)) this.set({ queue: name, state }, n);
        } catch {
          // an unreachable queue shows up in /readyz; a scrape should still answer
        }
      }
    },
  });
}

/** The metrics the background worker moves: what its thread reports to the server's scrape. */
const WORKER_METRICS = [pushOutcomes, webhookDeliveries];

export type MetricsSnapshot = client.MetricObjectWithValues<client.MetricValue<string>>[];

export function workerMetrics(): Promise<MetricsSnapshot> {
  return Promise.all(WORKER_METRICS.map((m) => m.get()));
}

const sources = new Set<() => Promise<MetricsSnapshot>>();

/** Adds another thread's metrics to every scrape until the returned function is called. */
export function addMetricsSource(source: () => Promise<MetricsSnapshot>): () => void {
  sources.add(source);
  return () => void sources.delete(source);
}

/** The /metrics text: this thread's registry, plus the counters of any other thread, summed by labels. */
export async function renderMetrics(): Promise<string> {
  if (sources.size === 0) return registry.metrics();
  // A thread that does not answer (restarting, stopping) leaves its counters out of this scrape only.
  const others = await Promise.all([...sources].map((source) => source().catch((): MetricsSnapshot => [])));
  return client.AggregatorRegistry.aggregate([await registry.getMetricsAsJSON(), ...others]).metrics();
}
