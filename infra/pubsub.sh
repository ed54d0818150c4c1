#!/usr/bin/env bash
# Pub/Sub: the retrain topic, pushed with an OIDC token to the trigger service; messages it
# cannot take after MAX_DELIVERY_ATTEMPTS go to the dead-letter topic, kept on a pull subscription.
# Converges on every run (create if missing, else update to the settings below).
# TRIGGER_URL defaults to the deployed trigger service's URL.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_topic() {
  local topic=$1
  if gcloud pubsub topics describe "${topic}" --format=none 2>/dev/null; then
    gcloud pubsub topics update "${topic}" --message-retention-duration="${MESSAGE_RETENTION}"
  else
    gcloud pubsub topics create "${topic}" --message-retention-duration="${MESSAGE_RETENTION}"
  fi
}

# ensure_subscription NAME TOPIC FLAGS...: the flags are those `create` and `update` both accept.
# Subscriptions never expire: an idle month must not delete the retrain path.
ensure_subscription() {
  local name=$1 topic=$2
  shift 2
  if gcloud pubsub subscriptions describe "${name}" --format=none 2>/dev/null; then
    gcloud pubsub subscriptions update "${name}" "$@"
  else
    gcloud pubsub subscriptions create "${name}" --topic="${topic}" --expiration-period=never "$@"
  fi
}

log "Pub/Sub topics ${RETRAIN_TOPIC} and ${DEAD_LETTER_TOPIC}"
ensure_topic "${RETRAIN_TOPIC}"
ensure_topic "${DEAD_LETTER_TOPIC}"

ensure_subscription "${DEAD_LETTER_SUBSCRIPTION}" "${DEAD_LETTER_TOPIC}" --message-retention-duration="${MESSAGE_RETENTION}"

trigger_url="${TRIGGER_URL:-$(service_url "${TRIGGER_SERVICE}")}"
log "push subscription ${TRIGGER_SUBSCRIPTION} -> ${trigger_url}"
ensure_subscription "${TRIGGER_SUBSCRIPTION}" "${RETRAIN_TOPIC}" \
  --push-endpoint="${trigger_url%/}/" \
  --push-auth-service-account="$(sa_email "${PUSH_SA}")" \
  --push-auth-token-audience="${trigger_url%/}" \
  --ack-deadline=60 \
  --min-retry-delay=10s --max-retry-delay=600s \
  --dead-letter-topic="${DEAD_LETTER_TOPIC}" --max-delivery-attempts="${MAX_DELIVERY_ATTEMPTS}" \
  --message-retention-duration="${MESSAGE_RETENTION}"
