# STAND-IN for python:3.11-slim-bookworm, for test environments that cannot pull from Docker Hub
# (see README.md here). Debian's own python3.11 with /usr/local made a venv: /usr/local/bin/python and
# a pip that is not "externally managed", as in the official image.
FROM churnflow-standin/bookworm:base
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /usr/local \
    && ln -s /usr/local/bin/python /usr/local/bin/python3.11-venv \
    && /usr/local/bin/python -m pip --version
ENV LANG=C.UTF-8
CMD ["python3"]
