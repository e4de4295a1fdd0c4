# Stand-in for the official postgres:<version>-bookworm (docker-library
# postgres), built by tests/compose/images.sh where no registry is reachable.
# Same: Debian bookworm (slim), user postgres uid/gid 999, gosu, the
# en_US.UTF-8 locale and LANG, PG_MAJOR and PATH with the server binaries,
# listen_addresses = '*' in the sample configuration, PGDATA and its VOLUME,
# /docker-entrypoint-initdb.d, STOPSIGNAL SIGINT, port 5432, CMD postgres,
# and an entrypoint with the official one's contract
# (standins/postgres-entrypoint.sh).
# Lost: PostgreSQL comes from Debian's postgresql-<major> package (same
# release, Debian's build and patches) instead of apt.postgresql.org's; the
# entrypoint is a re-implementation (no POSTGRES_INITDB_WALDIR, no
# nss_wrapper for arbitrary --user uids, no *.sql.xz/zst init scripts).
ARG BASE
FROM ${BASE}
ARG PG_MAJOR
ARG PG_VERSION
RUN groupadd -r postgres --gid=999 \
    && useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres \
    && mkdir -p /var/lib/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql
RUN apt-get update \
    && apt-get install -y --no-install-recommends gosu locales postgresql-common \
    && localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8 \
    && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}=${PG_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/${PG_MAJOR}/postgresql.conf.sample \
    && grep -F "listen_addresses = '*'" /usr/share/postgresql/${PG_MAJOR}/postgresql.conf.sample \
    && mkdir /docker-entrypoint-initdb.d
ENV LANG=en_US.utf8 \
    PG_MAJOR=${PG_MAJOR} \
    PG_VERSION=${PG_VERSION} \
    PATH=$PATH:/usr/lib/postgresql/${PG_MAJOR}/bin \
    PGDATA=/var/lib/postgresql/data
RUN mkdir -p /var/run/postgresql && chown -R postgres:postgres /var/run/postgresql && chmod 3777 /var/run/postgresql \
    && mkdir -p "$PGDATA" && chown -R postgres:postgres "$PGDATA" && chmod 1777 "$PGDATA"
VOLUME /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
