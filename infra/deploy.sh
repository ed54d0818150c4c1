#!/usr/bin/env bash
# Roll out one image tag: the predict, monitor and dashboard services, the retrain job and its trigger.
# Run by CI on every commit to main (make deploy) and by up.sh. Usage: infra/deploy.sh TAG
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tag="${1:?usage: deploy.sh TAG}"

mlflow_url="$(service_url "${MLFLOW_SERVICE}")"
common_env=("CHURNFLOW_PROJECT=${PROJECT_ID}" "GOOGLE_CLOUD_PROJECT=${PROJECT_ID}" "CHURNFLOW_BUCKET=${BUCKET}"
  "CHURNFLOW_RETRAIN_TOPIC=${RETRAIN_TOPIC}" "MLFLOW_TRACKING_URI=${mlflow_url}")
# the monitor and the job query the request log and the labels on BigQuery (bigquery.sh), and take
# the labels from LABELS_SOURCE when it is set (a table, or a query: it may hold commas)
outcomes_env=(CHURNFLOW_OUTCOMES_ENGINE=bigquery "CHURNFLOW_BIGQUERY_DATASET=${BIGQUERY_DATASET}"
  "CHURNFLOW_BIGQUERY_LOCATION=${BIGQUERY_LOCATION}")
if [[ -n "${LABELS_SOURCE}" ]]; then
  outcomes_env+=("CHURNFLOW_LABELS_SOURCE=${LABELS_SOURCE}")
fi

# env_vars NAME=VALUE...: one --set-env-vars value; if a value holds a comma, the pairs are joined with
# another delimiter, announced gcloud's way (`gcloud topic escaping`)
env_vars() {
  local delimiter=, joined
  if [[ "$*" == *,* ]]; then
    delimiter='|;|'
    printf '^%s^' "${delimiter}"
  fi
  printf -v joined "%s${delimiter}" "$@"
  printf '%s' "${joined%"${delimiter}"}"
}
# all egress through the VPC: that is how the services reach the internal-only MLflow
vpc=(--network="${NETWORK}" --subnet="${SUBNET}" --vpc-egress=all-traffic)

# deploy_service NAME FLAGS...: a new service is created private; later deploys leave its access as
# access.sh set it, so CI needs no IAM rights on services
deploy_service() {
  local name=$1
  shift
  local access=()
  if ! gcloud run services describe "${name}" --region="${REGION}" --format=none 2>/dev/null; then
    access=(--no-allow-unauthenticated)
  fi
  gcloud run deploy "${name}" --region="${REGION}" "${access[@]}" "$@"
}

log "predict ${tag}"
# CPU stays allocated between requests: the request log is flushed in the background.
# The request log's segments and spool live on an in-memory volume of their own, capped: its writes
# count against the 512 MiB and it dies with the instance (as /tmp would). The spool holds at most
# 64 MiB of batches (beyond: dropped, counted in /stats); the rest is room for the write-ahead
# segments (4 MiB each: the one written, those being uploaded, two spare). Cleared and added again: every deploy states them.
# Two containers: predict (the ingress one), and Managed Service for Prometheus's collector, which
# scrapes predict's /metrics on :8080 every 60 s (its default configuration) and writes them to Cloud
# Monitoring as the service's account (roles/monitoring.metricWriter, accounts.sh). Service flags first,
# then each container's own after its --container.
predict_env="$(env_vars "${common_env[@]}" CHURNFLOW_SPOOL_DIR=/spool "CHURNFLOW_SPOOL_MAX_BYTES=$((64 << 20))")"
deploy_service "${PREDICT_SERVICE}" \
  --service-account="$(sa_email "${PREDICT_SA}")" "${vpc[@]}" \
  --clear-volumes --add-volume=name=spool,type=in-memory,size-limit=96Mi \
  --ingress=all --concurrency=80 --no-cpu-throttling --cpu-boost \
  --min-instances="${PREDICT_MIN_INSTANCES}" --max-instances="${PREDICT_MAX_INSTANCES}" \
  --container=predict --image="${PREDICT_IMAGE}:${tag}" --port=8080 --set-env-vars="${predict_env}" \
  --clear-volume-mounts --add-volume-mount=volume=spool,mount-path=/spool --cpu=1 --memory=512Mi \
  --container=metrics-collector --image="${GMP_SIDECAR_IMAGE}" --depends-on=predict --cpu=1 --memory=256Mi

log "monitor ${tag}"
# one check at a time: a drift check is CPU-bound (Evidently) and holds the window's rows in memory
deploy_service "${MONITOR_SERVICE}" --image="${MONITOR_IMAGE}:${tag}" \
  --service-account="$(sa_email "${MONITOR_SA}")" \
  --set-env-vars="$(env_vars "${common_env[@]}" "${outcomes_env[@]}")" "${vpc[@]}" \
  --ingress=all --cpu=2 --memory=2Gi --concurrency=1 --max-instances=1 --timeout=900

log "dashboard ${tag}"
# Evidently's UI over the checks' history (gs://BUCKET/evidently, written by the monitor), in the monitor's
# image; its account can only read the bucket. Private: open it with
#   gcloud run services proxy DASHBOARD_SERVICE --region=REGION
# One instance: it holds the workspace's runs in memory (at most history_size, about 15 kB each).
deploy_service "${DASHBOARD_SERVICE}" --image="${MONITOR_IMAGE}:${tag}" \
  --command=python --args=-m,churnflow.monitoring.dashboard,--host,0.0.0.0 \
  --service-account="$(sa_email "${DASHBOARD_SA}")" \
  --set-env-vars="$(env_vars "CHURNFLOW_PROJECT=${PROJECT_ID}" "GOOGLE_CLOUD_PROJECT=${PROJECT_ID}" \
    "CHURNFLOW_BUCKET=${BUCKET}")" \
  --ingress=all --cpu=1 --memory=1Gi --max-instances=1 --timeout=60

log "retrain job ${tag}"
gcloud run jobs deploy "${RETRAIN_JOB}" --region="${REGION}" --image="${RETRAIN_IMAGE}:${tag}" \
  --service-account="$(sa_email "${RETRAIN_SA}")" \
  --set-env-vars="$(env_vars "${common_env[@]}" "${outcomes_env[@]}" \
    "CHURNFLOW_DATA_URI=gs://${BUCKET}/${TRAINING_DATA_OBJECT}")" "${vpc[@]}" \
  --tasks=1 --max-retries=2 --task-timeout=3600 --cpu=2 --memory=4Gi

log "trigger ${tag}"
# serves the Pub/Sub push and starts job executions; empty --command/--args: the image's own CMD runs,
# whatever an earlier revision overrode
deploy_service "${TRIGGER_SERVICE}" --image="${TRIGGER_IMAGE}:${tag}" --command="" --args="" \
  --service-account="$(sa_email "${TRIGGER_SA}")" \
  --set-env-vars="$(env_vars "${common_env[@]}" CHURNFLOW_JOB_LAUNCHER=cloud-run "CHURNFLOW_REGION=${REGION}" \
    "CHURNFLOW_JOB_NAME=${RETRAIN_JOB}")" \
  "${vpc[@]}" --ingress=internal --cpu=1 --memory=512Mi --max-instances=2 --timeout=60
