# Builds the ubiops-server image. SQL is checked against .sqlx/ at build time,
# so no database is needed here.
#
# Build caching (BuildKit, the default builder of `docker compose build`): the
# registry and the target directory live in cache mounts that persist between
# builds, so a change to the server's code recompiles only the crates that
# changed, and a change outside the build context's code (README, tests) does
# not reach the build at all (.dockerignore).
#
# Pinned: the toolchain satisfies Cargo.toml's rust-version; bump it, the
# Debian release and the packages together.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p ubiops-server \
    && cp target/release/ubiops-server /usr/local/bin/ubiops-server

FROM debian:12.15-slim
# curl: the healthcheck asks the server's own /status. python3 and
# python3-venv: builds make each revision's virtual environment with them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ubiops \
    && useradd --system --uid 10001 --gid ubiops --home-dir /var/lib/ubiops --create-home ubiops \
    && chmod 700 /var/lib/ubiops
COPY --from=build /usr/local/bin/ubiops-server /usr/local/bin/ubiops-server
USER ubiops
WORKDIR /var/lib/ubiops
# The data directory holds the generated secret key: keep it on a volume.
VOLUME /var/lib/ubiops
ENV UBIOPS_LISTEN=0.0.0.0:8080 \
    UBIOPS_DATA_DIR=/var/lib/ubiops
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/status || exit 1
ENTRYPOINT ["ubiops-server"]
CMD ["serve"]
