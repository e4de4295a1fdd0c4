# Stand-in for the official chrislusf/seaweedfs:<version> (SeaweedFS's
# docker/Dockerfile.go_build), built by tests/compose/images.sh where no
# registry is reachable.
# Same: the weed binary of that release (/usr/bin/weed), an entrypoint with
# the official one's behaviour (standins/seaweedfs-entrypoint.sh: fix /data
# ownership, drop to the seaweed user, uid 1000; default flags per
# subcommand), curl, /etc/seaweedfs, VOLUME /data, WORKDIR /data, the same
# ports, CMD mini -dir=/data.
# Lost: the official base is Alpine with su-exec (here Debian slim with
# setpriv; weed is a static Go binary either way); no Rust volume server or
# Rust maintenance worker (weed-volume, weed-worker), so the `volume-rust`
# and `worker-rust` subcommands are missing; no FUSE.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd -g 1000 seaweed \
    && useradd -u 1000 -g seaweed -M -d /data -s /usr/sbin/nologin seaweed
COPY weed /usr/bin/weed
COPY entrypoint.sh /entrypoint.sh
RUN mkdir -p /etc/seaweedfs /data/filerldb2 \
    && chown -R seaweed:seaweed /data /etc/seaweedfs \
    && chmod 755 /entrypoint.sh /usr/bin/weed
EXPOSE 18080 8080 18888 8888 19333 9333 8333 7333
VOLUME /data
WORKDIR /data
ENTRYPOINT ["/entrypoint.sh"]
CMD ["mini", "-dir=/data"]
