# Container images of the voting app: one final stage per binary.
#
#   docker build --target vote -t voting-app/vote:latest .
#   docker compose build            # all five, as docker-compose.yml names them
#
# Stages:
#   chef     the Rust toolchain plus cargo-chef
#   planner  reduces the workspace to a "recipe" (manifests, lock file, target list)
#   builder  compiles the dependencies from the recipe alone (a layer that is
#            reused until Cargo.toml or Cargo.lock change), then the real sources
#   runtime  the common base of the final stages: Debian bookworm, a numeric
#            non-root user, no shell needed (healthchecks are the binaries' own
#            `healthcheck` subcommand)
#   vote, worker, result, seed, hits   one small image each
#
# Works with the classic builder as well as with BuildKit: no `# syntax=` line,
# no `RUN --mount`. Layer caching comes from cargo-chef, whose recipe changes
# only when a manifest or the lock file does.
#
# Base images are build arguments so that a locally built image can stand in for
# them where no registry is reachable (tests/docker/build-real-images.sh does so).
# Builder and runtime MUST be the same Debian release: `rust:1` moved to trixie,
# and a binary linked there fails on bookworm with "GLIBC_2.39 not found".
# RUNTIME_IMAGE may also be the distroless "cc-debian12" image (glibc, libgcc,
# no shell): the final stages run no command in it.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.78
# `--locked`: cargo-chef's own dependency versions, as its authors tested them.
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}" \
    && rm -rf "${CARGO_HOME:-/usr/local/cargo}/registry"
WORKDIR /app

# ---------------------------------------------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------
FROM chef AS builder
# sqlx: query macros, where used, read the committed .sqlx/ data instead of a
# live database (the build has none).
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only. This layer is rebuilt only when recipe.json changes, i.e.
# when a Cargo.toml or Cargo.lock changes, not on every source edit.
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
# migrations/ is embedded by crates/common at compile time (sqlx::migrate!);
# templates and static assets are compiled in as well.
RUN cargo build --release --locked \
        -p vote -p worker -p result -p seed -p hits \
    && mkdir -p /out \
    && for bin in vote worker result seed hits; do \
         cp "target/release/$bin" "/out/$bin" || exit 1; \
       done

# ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.vendor="voting-app" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
# Numeric, so it needs no /etc/passwd entry and Kubernetes' runAsNonRoot can
# verify it. Ports below 1024 are bound without privileges: Docker (20.10+)
# sets net.ipv4.ip_unprivileged_port_start=0 in the container's namespace.
USER 10001:10001
ENV RUST_LOG=info \
    LOG_FORMAT=text

# ---------------------------------------------------------------------------
FROM runtime AS vote
LABEL org.opencontainers.image.title="voting-app vote" \
      org.opencontainers.image.description="Voting page: records one vote per browser into Redis"
COPY --from=builder /out/vote /usr/local/bin/vote
ENV BIND_PORT=80 \
    ADMIN_PORT=5858
EXPOSE 80 5858
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/vote", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/vote"]

# ---------------------------------------------------------------------------
FROM runtime AS worker
LABEL org.opencontainers.image.title="voting-app worker" \
      org.opencontainers.image.description="Moves votes from Redis into Postgres and keeps the tallies"
COPY --from=builder /out/worker /usr/local/bin/worker
ENV ADMIN_PORT=5858
EXPOSE 5858
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/worker", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/worker"]

# ---------------------------------------------------------------------------
FROM runtime AS result
LABEL org.opencontainers.image.title="voting-app result" \
      org.opencontainers.image.description="Live results page, pushed with Server-Sent Events"
COPY --from=builder /out/result /usr/local/bin/result
ENV BIND_PORT=80 \
    ADMIN_PORT=5858
EXPOSE 80 5858
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/result", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/result"]

# ---------------------------------------------------------------------------
FROM runtime AS seed
LABEL org.opencontainers.image.title="voting-app seed" \
      org.opencontainers.image.description="One-shot load generator: POSTs votes to the vote service"
COPY --from=builder /out/seed /usr/local/bin/seed
# The scenario files of seed-data/, for `seed` options that name a scenario.
COPY seed-data /usr/share/seed-data
ENV SEED_DATA_DIR=/usr/share/seed-data
# A one-shot job, not a service: nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/seed"]

# ---------------------------------------------------------------------------
FROM runtime AS hits
LABEL org.opencontainers.image.title="voting-app hits" \
      org.opencontainers.image.description="The course's hit counter: Hello World! I have been seen N times."
COPY --from=builder /out/hits /usr/local/bin/hits
ENV BIND_PORT=5000
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/hits", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/hits"]
