#!/usr/bin/env bash
# `make test-compose`: docker-compose.local.yml on a real Docker engine. Ensures an engine (starting
# Debian's dockerd when none answers and this runs as root; otherwise skips with the reason), the base
# images (offline stand-ins only where they cannot be pulled: infra/local/standins), then runs
# tests/compose, which builds the images, brings the stack up with --wait, checks it and takes it down.
# A dockerd started here is stopped at the end; one that was already running is left alone.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
# shellcheck source=infra/local/engine.sh
source "${HERE}/engine.sh"

if ! ensure_engine; then
  echo "SKIPPED make test-compose: ${ENGINE_SKIP}"
  exit 0
fi
trap stop_engine EXIT

started=${SECONDS}
PYTHON="${PYTHON}" "${HERE}/standins/build.sh"
echo "== base images ready in $((SECONDS - started)) s"
cd "${ROOT}"
# ${PYTEST_ARGS} is word-split on purpose: it holds several options
# shellcheck disable=SC2086
"${PYTHON}" -m pytest tests/compose ${PYTEST_ARGS:-}
