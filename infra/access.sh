#!/usr/bin/env bash
# Least privilege on single resources, once they all exist: every grant ChurnFlow's accounts get
# beyond the project roles of accounts.sh. Bindings are idempotent (adding an existing one is a no-op).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

project_number="$(gcloud projects describe "${PROJECT_ID}" --format='value(projectNumber)')"
pubsub_agent="serviceAccount:service-${project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

log "bucket: predict only appends request logs; the others read and write objects"
gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
  --member="$(sa_member "${PREDICT_SA}")" --role=roles/storage.objectCreator --format=none
for account in "${MONITOR_SA}" "${TRIGGER_SA}" "${RETRAIN_SA}" "${MLFLOW_SA}"; do
  gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
    --member="$(sa_member "${account}")" --role=roles/storage.objectUser --format=none
done

# the dashboard only reads (the workspace under evidently/); gcsfs also looks the bucket up, hence the bucket reader
for role in roles/storage.objectViewer roles/storage.legacyBucketReader; do
  gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
    --member="$(sa_member "${DASHBOARD_SA}")" --role="${role}" --format=none
done

log "Pub/Sub: the monitor publishes retrain requests; Pub/Sub dead-letters and signs push tokens"
gcloud pubsub topics add-iam-policy-binding "${RETRAIN_TOPIC}" \
  --member="$(sa_member "${MONITOR_SA}")" --role=roles/pubsub.publisher --format=none
gcloud pubsub topics add-iam-policy-binding "${DEAD_LETTER_TOPIC}" \
  --member="${pubsub_agent}" --role=roles/pubsub.publisher --format=none
gcloud pubsub subscriptions add-iam-policy-binding "${TRIGGER_SUBSCRIPTION}" \
  --member="${pubsub_agent}" --role=roles/pubsub.subscriber --format=none
# needed by projects created before April 2021 to mint the push OIDC tokens
gcloud iam service-accounts add-iam-policy-binding "$(sa_email "${PUSH_SA}")" \
  --member="${pubsub_agent}" --role=roles/iam.serviceAccountTokenCreator --format=none

log "Cloud Run: the scheduler calls the monitor, Pub/Sub calls the trigger, the trigger runs the job"
gcloud run services add-iam-policy-binding "${MONITOR_SERVICE}" --region="${REGION}" \
  --member="$(sa_member "${SCHEDULER_SA}")" --role=roles/run.invoker --format=none
gcloud run services add-iam-policy-binding "${TRIGGER_SERVICE}" --region="${REGION}" \
  --member="$(sa_member "${PUSH_SA}")" --role=roles/run.invoker --format=none
gcloud run jobs add-iam-policy-binding "${RETRAIN_JOB}" --region="${REGION}" \
  --member="$(sa_member "${TRIGGER_SA}")" --role=roles/run.jobsExecutorWithOverrides --format=none
for member in ${PREDICT_INVOKERS}; do
  gcloud run services add-iam-policy-binding "${PREDICT_SERVICE}" --region="${REGION}" \
    --member="${member}" --role=roles/run.invoker --format=none
done
for member in ${DASHBOARD_VIEWERS}; do
  gcloud run services add-iam-policy-binding "${DASHBOARD_SERVICE}" --region="${REGION}" \
    --member="${member}" --role=roles/run.invoker --format=none
done
