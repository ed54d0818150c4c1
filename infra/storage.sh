#!/usr/bin/env bash
# The bucket: uniform access, no public access, old request logs deleted by a lifecycle rule, and the
# base training data uploaded once. Converges on every run (create if missing, then update).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log "bucket gs://${BUCKET}"
if ! gcloud storage buckets describe "gs://${BUCKET}" --format=none 2>/dev/null; then
  gcloud storage buckets create "gs://${BUCKET}" --location="${REGION}" \
    --uniform-bucket-level-access --public-access-prevention
fi

lifecycle="$(mktemp)"
trap 'rm -f "${lifecycle}"' EXIT
cat >"${lifecycle}" <<JSON
{"rule": [{"action": {"type": "Delete"},
           "condition": {"age": ${REQUEST_LOG_RETENTION_DAYS}, "matchesPrefix": ["${REQUEST_LOG_PREFIX}"]}}]}
JSON
gcloud storage buckets update "gs://${BUCKET}" \
  --uniform-bucket-level-access --public-access-prevention --lifecycle-file="${lifecycle}"

# --no-clobber: a training set replaced on purpose later is never overwritten by a rerun
gcloud storage cp --no-clobber "${REPO_ROOT}/data/telco_churn.csv" "gs://${BUCKET}/${TRAINING_DATA_OBJECT}"
