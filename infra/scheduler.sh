#!/usr/bin/env bash
# Cloud Scheduler calls the monitor on MONITOR_SCHEDULE with an OIDC token of the scheduler account.
# Converges on every run (create if missing, else update).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

monitor_url="$(service_url "${MONITOR_SERVICE}")"
log "scheduler job ${SCHEDULER_JOB}: POST ${monitor_url}/ on '${MONITOR_SCHEDULE}'"
flags=(
  --location="${REGION}" --schedule="${MONITOR_SCHEDULE}" --time-zone="${SCHEDULE_TIME_ZONE}"
  --uri="${monitor_url}/" --http-method=post --message-body='{}'
  --oidc-service-account-email="$(sa_email "${SCHEDULER_SA}")" --oidc-token-audience="${monitor_url}"
  --attempt-deadline=900s --max-retry-attempts=3 --min-backoff=30s
)
if gcloud scheduler jobs describe "${SCHEDULER_JOB}" --location="${REGION}" --format=none 2>/dev/null; then
  gcloud scheduler jobs update http "${SCHEDULER_JOB}" "${flags[@]}" --update-headers=Content-Type=application/json
else
  gcloud scheduler jobs create http "${SCHEDULER_JOB}" "${flags[@]}" --headers=Content-Type=application/json
fi
