#!/usr/bin/env bash
# Alerting: the log-based metrics the functions' and the job's event lines feed, one notification
# channel (ALERT_EMAIL), and the alert policies of infra/monitoring/policies (docs/runbook.md says
# what each one means and what to do). Predict's own metrics come from its Managed Service for
# Prometheus sidecar (deploy.sh); the policies on them are PromQL. Converges on every run.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

monitoring="${INFRA_DIR}/monitoring"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

log "log-based metrics"
for file in "${monitoring}"/log-metrics/*.yaml; do
  name="$(basename "${file}" .yaml)"
  if gcloud logging metrics describe "${name}" --format=none 2>/dev/null; then
    gcloud logging metrics update "${name}" --config-from-file="${file}"
  else
    gcloud logging metrics create "${name}" --config-from-file="${file}"
  fi
done

channel=""
if [[ -n "${ALERT_EMAIL}" ]]; then
  log "notification channel '${ALERT_CHANNEL_NAME}': ${ALERT_EMAIL}"
  channel="$(gcloud beta monitoring channels list --filter="displayName=\"${ALERT_CHANNEL_NAME}\"" \
    --format='value(name)' | head -n 1)"
  labels="email_address=${ALERT_EMAIL}"
  if [[ -z "${channel}" ]]; then
    channel="$(gcloud beta monitoring channels create --display-name="${ALERT_CHANNEL_NAME}" --type=email \
      --channel-labels="${labels}" --format='value(name)')"
  else
    gcloud beta monitoring channels update "${channel}" --update-channel-labels="${labels}" --format=none
  fi
else
  log "no ALERT_EMAIL: the alert policies notify nobody (the console shows their incidents)"
fi

# render POLICY: the policy with this deployment's names, thresholds and channel filled in
render() {
  sed -e "s|\"@CHANNEL@\"|${channel:+\"${channel}\"}|" \
    -e "s|@RETRAIN_JOB@|${RETRAIN_JOB}|g" \
    -e "s|@CHECK_ABSENT_S@|$((2 * MONITOR_INTERVAL_S))|g" \
    -e "s|@PREDICT_5XX_RATIO@|${PREDICT_5XX_RATIO}|g" \
    -e "s|@PREDICT_P99_S@|${PREDICT_P99_S}|g" "$1"
}

log "alert policies"
for file in "${monitoring}"/policies/*.json; do
  rendered="${work}/$(basename "${file}")"
  render "${file}" >"${rendered}"
  display="$(sed -n 's/^  "displayName": "\(.*\)",$/\1/p' "${rendered}")"
  existing="$(gcloud alpha monitoring policies list --filter="displayName=\"${display}\"" \
    --format='value(name)' | head -n 1)"
  if [[ -n "${existing}" ]]; then
    gcloud alpha monitoring policies update "${existing}" --policy-from-file="${rendered}" --format=none
  else
    gcloud alpha monitoring policies create --policy-from-file="${rendered}" --format=none
  fi
done
