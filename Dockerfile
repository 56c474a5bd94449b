# syntax=docker/dockerfile:1
#
# The self-hosted groupcast server as a small image: one static-ish binary on Debian slim,
# running as an unprivileged user, with its SQLite database (and the generated encryption
# key, unless ENCRYPTION_KEY is set) in the /data volume. See docs/operations.md.
#
#   docker build -t groupcast .
#   docker run -d -v groupcast-data:/data -e TELEGRAM_BOT_TOKEN=... groupcast
#
# Three stages:
#   skeleton  every Cargo manifest and the lockfile, with each .rs file replaced by a stub, so
#             the dependency layer below is rebuilt only when dependencies change;
#   builder   compiles the dependencies (cached layer), then the real sources;
#   runtime   debian:bookworm-slim + ca-certificates + the binary.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS skeleton
WORKDIR /src
COPY . .
# Keep only what decides the dependency graph. Stubs keep every target path that a manifest
# may name explicitly: `src/lib.rs` files become empty, every other .rs file `fn main() {}`.
RUN printf 'fn main() {}\n' > /tmp/main.rs \
    && find . -name '*.rs' -path '*/src/lib.rs' -exec truncate --size 0 {} + \
    && find . -name '*.rs' -not -path '*/src/lib.rs' -exec cp /tmp/main.rs {} \; \
    && find . -type f -not -name '*.rs' -not -name 'Cargo.toml' -not -name 'Cargo.lock' -delete \
    && find . -type d -empty -delete

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY --from=skeleton /src ./
# Dependencies only: this layer is reused as long as the manifests and the lockfile are the
# same. The registry is a cache mount (downloads survive between builds on one builder).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked --bin groupcast
COPY . .
# The real sources: touch them so cargo never takes a stub's build for a fresh one.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    find crates tests -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin groupcast \
    && install -m 0755 target/release/groupcast /usr/local/bin/groupcast

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates for the system trust store; nothing else (no shell tools are added: the
# health check uses bash's /dev/tcp, see scripts/healthcheck). Not version-pinned: the
# security updates of the Debian release are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 groupcast \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin groupcast \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=builder /usr/local/bin/groupcast /usr/local/bin/groupcast
COPY --chmod=0755 scripts/healthcheck /usr/local/bin/groupcast-healthcheck

# Settings the image decides; everything else comes from the environment (.env with compose).
ENV DATABASE_PATH=/data/groupcast.db \
    LISTEN_ADDR=0.0.0.0:8080 \
    RUST_LOG=info
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001

# /healthz answers 200 when the database and the state backend (Redis if set) answer.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["groupcast-healthcheck"]

# SIGTERM (docker stop) makes the server finish the send in flight, release its leases and
# exit within 10 s; compose.yaml gives it 20 s before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["groupcast"]
CMD ["serve"]
