# flaggate container image.
#
#   docker build -t flaggate .
#   docker run -p 8080:8080 -v "$PWD/policy:/etc/flaggate:ro" flaggate
#
# The policy is read from /etc/flaggate/gateway.yaml (the shipped config/gateway.yaml until
# something is mounted there). Mount a DIRECTORY at /etc/flaggate, not the single file: editors
# and Kubernetes ConfigMaps replace the file by rename, and the gateway reloads by watching the
# directory. test/ops/dockerfile.test.ts runs the runtime stage's steps without a Docker engine.

# --- build: every dependency, TypeScript compiled to dist/ ---------------------------------------
# Node 24, the current LTS (Node 20 reached end of life on 2026-04-30; docs/runtime.md)
FROM node:24.12-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` compiles, and the sources are not copied yet (better layer caching)
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies and dist/ only ---------------------------------------------
FROM node:24.12-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
COPY config/gateway.yaml /etc/flaggate/gateway.yaml
# Without Redis, runtime blocks are kept in a state file. The shipped policy puts it next to the
# policy (blocking.stateFile: ${FLAGGATE_STATE_FILE:-.flaggate/blocks.json}), which here is a
# read-only mount: the image points it at a directory of its own, writable by the gateway's user,
# and a volume so the blocks outlive the container. If it cannot be written anyway, a runtime
# block is refused with 503 FLAGGATE_STATE_UNAVAILABLE rather than lost at the next restart.
ENV FLAGGATE_STATE_FILE=/var/lib/flaggate/blocks.json
RUN mkdir -p /var/lib/flaggate && chown node:node /var/lib/flaggate
VOLUME /var/lib/flaggate
# the official image's unprivileged user (uid 1000); it writes only FLAGGATE_STATE_FILE
USER node
# 8080 public listener; 8081 admin API and /metrics (loopback unless FLAGGATE_ADMIN_LISTEN says
# otherwise, and then FLAGGATE_ADMIN_TOKEN is required)
EXPOSE 8080 8081
# slim images have no curl: Node's own fetch. The port follows FLAGGATE_LISTEN, as the shipped
# policy does; /healthz never depends on Core or Redis, so an upstream outage never restarts this.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const p=(process.env.FLAGGATE_LISTEN||'0.0.0.0:8080').split(':').pop();fetch('http://127.0.0.1:'+p+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# exec form, node as PID 1: SIGTERM reaches the gateway, which drains and exits 0
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "--config", "/etc/flaggate/gateway.yaml"]
