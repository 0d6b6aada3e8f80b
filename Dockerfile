# syntax=docker/dockerfile:1
# One image for every node: the same binaries run as the API (`api`) or as stage workers
# (`worker`) on EC2. Built in three steps so the dependencies (the heavy AWS SDK crates)
# sit in their own cached layer and only our own code rebuilds on a change.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe lists the dependencies only; it changes when Cargo.toml or Cargo.lock do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p k8or-api -p k8or-workers --bin k8or-api --bin k8or-worker

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/k8or --create-home k8or
COPY --from=builder /src/target/release/k8or-api /src/target/release/k8or-worker /usr/local/bin/
COPY deploy/entrypoint.sh /usr/local/bin/k8or-entrypoint
COPY queues.toml /etc/k8or/queues.toml
COPY migrations /usr/share/k8or/migrations
ENV K8OR_CONFIG=/etc/k8or/queues.toml \
    K8OR_DATA_DIR=/var/lib/k8or \
    K8OR_LISTEN=0.0.0.0:8080 \
    K8OR_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/k8or
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["k8or-entrypoint", "healthcheck"]
ENTRYPOINT ["k8or-entrypoint"]
CMD ["api", "serve"]
