#!/usr/bin/env bash
# The MLflow tracking server on Cloud Run: Postgres on Cloud SQL as backend store, artifacts proxied
# to gs://BUCKET/mlflow. Internal ingress only: it is reached from the services' VPC traffic, never
# from the internet. Usage: infra/mlflow.sh TAG (the image tag).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tag="${1:?usage: mlflow.sh TAG}"

log "Private Google Access on subnet ${SUBNET}: VPC traffic reaches Google APIs and internal services"
gcloud compute networks subnets update "${SUBNET}" --region="${REGION}" --enable-private-ip-google-access

log "Cloud SQL instance ${SQL_INSTANCE} (takes minutes the first time)"
if ! gcloud sql instances describe "${SQL_INSTANCE}" --format=none 2>/dev/null; then
  gcloud sql instances create "${SQL_INSTANCE}" --region="${REGION}" --database-version=POSTGRES_16 \
    --edition=enterprise --tier="${SQL_TIER}" --storage-auto-increase
fi
if ! gcloud sql databases describe "${SQL_DATABASE}" --instance="${SQL_INSTANCE}" --format=none 2>/dev/null; then
  gcloud sql databases create "${SQL_DATABASE}" --instance="${SQL_INSTANCE}"
fi
connection="$(gcloud sql instances describe "${SQL_INSTANCE}" --format='value(connectionName)')"

# The password is generated here, set on the database user and stored only inside the backend URI
# secret; a rerun with the secret in place changes neither.
if ! gcloud secrets describe "${MLFLOW_DB_SECRET}" --format=none 2>/dev/null; then
  log "database user ${SQL_USER} and secret ${MLFLOW_DB_SECRET}"
  password="$(openssl rand -hex 24)"
  if gcloud sql users describe "${SQL_USER}" --instance="${SQL_INSTANCE}" --format=none 2>/dev/null; then
    gcloud sql users set-password "${SQL_USER}" --instance="${SQL_INSTANCE}" --password="${password}"
  else
    gcloud sql users create "${SQL_USER}" --instance="${SQL_INSTANCE}" --password="${password}"
  fi
  printf 'postgresql+psycopg2://%s:%s@/%s?host=/cloudsql/%s' \
    "${SQL_USER}" "${password}" "${SQL_DATABASE}" "${connection}" |
    gcloud secrets create "${MLFLOW_DB_SECRET}" --replication-policy=automatic --data-file=-
fi
gcloud secrets add-iam-policy-binding "${MLFLOW_DB_SECRET}" \
  --member="$(sa_member "${MLFLOW_SA}")" --role=roles/secretmanager.secretAccessor --format=none

log "MLflow service ${MLFLOW_SERVICE} (${tag})"
# one warm instance: a cold MLflow takes 10-16 s, longer than the clients' registry timeout
gcloud run deploy "${MLFLOW_SERVICE}" --region="${REGION}" --image="${MLFLOW_IMAGE}:${tag}" \
  --service-account="$(sa_email "${MLFLOW_SA}")" \
  --add-cloudsql-instances="${connection}" \
  --set-secrets="MLFLOW_BACKEND_STORE_URI=${MLFLOW_DB_SECRET}:latest" \
  --set-env-vars="MLFLOW_ARTIFACTS_DESTINATION=gs://${BUCKET}/${MLFLOW_ARTIFACTS_PREFIX},MLFLOW_SERVER_ALLOWED_HOSTS=${MLFLOW_SERVICE}-*.run.app" \
  --ingress=internal --no-invoker-iam-check \
  --cpu=1 --memory=2Gi --min-instances=1 --max-instances=2 --cpu-boost
