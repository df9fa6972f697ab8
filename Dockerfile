# syntax=docker/dockerfile:1
#
# Mooring server image.
#
#   docker build -t mooring .
#   docker run -d --init -p 8443:8443 -p 8080:8080 -v mooring:/var/lib/mooring \
#     -e MOORING_PUBLIC_URL=https://mdm.example.com mooring
#
# Without DATABASE_URL the container runs the embedded Postgres under /var/lib/mooring/data (as the
# non-root user `mooring`). docker-compose.yml runs it with real Postgres and Redis services instead;
# see docs/deployment.md.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript, then drop the dev dependencies --------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    MOORING_DATA_DIR=/var/lib/mooring/data \
    MOORING_CERTS_DIR=/var/lib/mooring/certs

RUN groupadd --system mooring \
 && useradd --system --gid mooring --home-dir /var/lib/mooring --no-create-home --shell /usr/sbin/nologin mooring \
 && mkdir -p /var/lib/mooring/data /var/lib/mooring/certs \
 && chown -R mooring:mooring /var/lib/mooring \
 && chmod 0700 /var/lib/mooring/certs

WORKDIR /app
# Application files belong to root: the server can read but not change its own code.
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY --from=build /src/package.json ./package.json

USER mooring
# Everything Mooring writes: data/ (embedded Postgres) and certs/ (CA, TLS, webhook secret).
VOLUME ["/var/lib/mooring"]
# 8443: HTTPS (devices, admin API). 8080: plain HTTP (health, metrics, admin API, traffic from a TLS-terminating proxy).
EXPOSE 8443 8080

# Liveness only (/readyz also checks the database and queue; docker-compose.yml uses that for the api).
# A worker-only container (`worker`) has no HTTP listener: turn this check off for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:' + (process.env.MOORING_HTTP_PORT || 8080) + '/healthz', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1)).setTimeout(4000, () => process.exit(1))"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/mooring.js"]
CMD ["serve"]
