# Stand-in for the official rust:<version>-bookworm (docker-library/rust),
# built by tests/compose/images.sh where no registry is reachable.
# Same: Debian bookworm, RUSTUP_HOME=/usr/local/rustup,
# CARGO_HOME=/usr/local/cargo, PATH, rustup with its proxies (cargo, rustc,
# ...) in /usr/local/cargo/bin, the default toolchain <version>, a C
# toolchain, git, curl, pkg-config and the libraries crates commonly link.
# Lost: the official image's base is buildpack-deps:bookworm, which carries
# many more -dev packages than installed here; the toolchain is the host's
# copy of the same release (not re-downloaded by rustup, its docs left out);
# the host's CA bundle is trusted in addition to Debian's, since downloads
# from crates.io go through the CI machine's TLS-intercepting egress.
ARG BASE
FROM ${BASE}
ARG RUST_VERSION
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       ca-certificates curl git gcc g++ libc6-dev make pkg-config libssl-dev zlib1g-dev xz-utils \
    && rm -rf /var/lib/apt/lists/*
COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt
RUN update-ca-certificates >/dev/null
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH \
    RUST_VERSION=${RUST_VERSION}
COPY toolchain /usr/local/rustup/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu
COPY rustup /usr/local/cargo/bin/rustup
RUN for tool in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-lldb; do \
        ln -s rustup /usr/local/cargo/bin/$tool; \
    done \
    && printf 'version = "12"\ndefault_toolchain = "%s-x86_64-unknown-linux-gnu"\nprofile = "minimal"\n' "$RUST_VERSION" \
       > /usr/local/rustup/settings.toml \
    && chmod -R a+w /usr/local/rustup /usr/local/cargo \
    && rustup --version && cargo --version && rustc --version
