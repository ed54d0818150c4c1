# STAND-IN for postgres:*-alpine (README.md here): Debian 12's PostgreSQL 15 behind an entrypoint that
# honours the official image's POSTGRES_USER, POSTGRES_DB and POSTGRES_HOST_AUTH_METHOD=trust (only).
FROM churnflow-standin/bookworm:base
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
