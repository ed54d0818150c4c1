#!/usr/bin/env bash
# The Artifact Registry repository of the images, with a cleanup policy so storage does not grow
# with every commit.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log "Artifact Registry repository ${REPOSITORY} in ${REGION}"
if ! gcloud artifacts repositories describe "${REPOSITORY}" --location="${REGION}" --format=none 2>/dev/null; then
  gcloud artifacts repositories create "${REPOSITORY}" --location="${REGION}" \
    --repository-format=docker --description="ChurnFlow images (tags are commits)"
fi

policy="$(mktemp)"
trap 'rm -f "${policy}"' EXIT
cat >"${policy}" <<JSON
[
  {"name": "keep-recent", "action": {"type": "Keep"}, "mostRecentVersions": {"keepCount": ${IMAGES_KEPT}}},
  {"name": "delete-older", "action": {"type": "Delete"}, "condition": {"olderThan": "30d"}}
]
JSON
gcloud artifacts repositories set-cleanup-policies "${REPOSITORY}" --location="${REGION}" \
  --policy="${policy}" --no-dry-run
