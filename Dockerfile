# Builds the ubiops-server binary. SQL is checked against .sqlx/ at build time,
# so no database is needed here.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ubiops-server

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/ubiops --create-home ubiops
COPY --from=build /src/target/release/ubiops-server /usr/local/bin/ubiops-server
USER ubiops
WORKDIR /var/lib/ubiops
ENV UBIOPS_LISTEN=0.0.0.0:8080 \
    UBIOPS_DATA_DIR=/var/lib/ubiops
EXPOSE 8080
ENTRYPOINT ["ubiops-server"]
CMD ["serve"]
