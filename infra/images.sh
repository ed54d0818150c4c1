#!/usr/bin/env bash
# Build or push the five images of one tag (the commit): infra/images.sh build|push TAG
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage="usage: images.sh build|push TAG"
action="${1:?${usage}}"
tag="${2:?${usage}}"

# image -> Dockerfile; every image builds from the repository root (see .dockerignore)
declare -A DOCKERFILES=(
  ["${PREDICT_IMAGE}"]=functions/predict/Dockerfile
  ["${MONITOR_IMAGE}"]=functions/monitor/Dockerfile
  ["${RETRAIN_IMAGE}"]=functions/retrain/Dockerfile
  ["${TRIGGER_IMAGE}"]=functions/trigger/Dockerfile
  ["${MLFLOW_IMAGE}"]=infra/mlflow/Dockerfile
)

case "${action}" in
  build)
    for image in "${!DOCKERFILES[@]}"; do
      log "build ${image}:${tag}"
      docker build --file "${REPO_ROOT}/${DOCKERFILES[${image}]}" --build-arg "CODE_VERSION=${tag}" \
        --tag "${image}:${tag}" "${REPO_ROOT}"
    done
    ;;
  push)
    gcloud auth configure-docker "${REGION}-docker.pkg.dev" --quiet
    for image in "${!DOCKERFILES[@]}"; do
      log "push ${image}:${tag}"
      docker push "${image}:${tag}"
    done
    ;;
  *)
    echo "${usage}" >&2
    exit 2
    ;;
esac
