#!/usr/bin/env bash
# One service account per service, and the roles that can only be granted on the whole project.
# Roles on single resources (bucket, topics, services, job) are granted by access.sh, once they exist.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_account() {
  local account=$1 description=$2
  if ! gcloud iam service-accounts describe "$(sa_email "${account}")" --format=none 2>/dev/null; then
    gcloud iam service-accounts create "${account}" --display-name="${description}"
  fi
}

project_role() {
  gcloud projects add-iam-policy-binding "${PROJECT_ID}" --member="$1" --role="$2" --condition=None --format=none
}

log "service accounts"
ensure_account "${PREDICT_SA}" "ChurnFlow predict service"
ensure_account "${MONITOR_SA}" "ChurnFlow drift monitor"
ensure_account "${TRIGGER_SA}" "ChurnFlow retrain trigger"
ensure_account "${RETRAIN_SA}" "ChurnFlow retrain job"
ensure_account "${MLFLOW_SA}" "ChurnFlow MLflow server"
ensure_account "${DASHBOARD_SA}" "ChurnFlow history dashboard (Evidently UI)"
ensure_account "${SCHEDULER_SA}" "ChurnFlow scheduler: calls the monitor"
ensure_account "${PUSH_SA}" "ChurnFlow Pub/Sub push: calls the trigger"
ensure_account "${DEPLOYER_SA}" "ChurnFlow deployer (CI)"

log "project roles"
project_role "$(sa_member "${MLFLOW_SA}")" roles/cloudsql.client
# the monitor and the job run BigQuery queries (billed to the project); what they may read is the
# ChurnFlow dataset only (bigquery.sh)
for account in "${MONITOR_SA}" "${RETRAIN_SA}"; do
  project_role "$(sa_member "${account}")" roles/bigquery.jobUser
done
# the deployer rolls out revisions of existing services and the job (no IAM rights on them) and
# writes the logs of the Cloud Build runs it executes
# predict's metrics sidecar writes to Managed Service for Prometheus as the service's account
project_role "$(sa_member "${PREDICT_SA}")" roles/monitoring.metricWriter
project_role "$(sa_member "${DEPLOYER_SA}")" roles/run.developer
project_role "$(sa_member "${DEPLOYER_SA}")" roles/logging.logWriter

log "the deployer may deploy revisions that run as the runtime accounts, and push images"
for account in "${PREDICT_SA}" "${MONITOR_SA}" "${TRIGGER_SA}" "${RETRAIN_SA}" "${DASHBOARD_SA}"; do
  gcloud iam service-accounts add-iam-policy-binding "$(sa_email "${account}")" \
    --member="$(sa_member "${DEPLOYER_SA}")" --role=roles/iam.serviceAccountUser --format=none
done
gcloud artifacts repositories add-iam-policy-binding "${REPOSITORY}" --location="${REGION}" \
  --member="$(sa_member "${DEPLOYER_SA}")" --role=roles/artifactregistry.writer --format=none
