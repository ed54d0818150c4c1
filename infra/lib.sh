# Sourced by every script in infra/: the config, and the few helpers the scripts share.
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this file

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "${INFRA_DIR}")"
# shellcheck source=infra/config.env
source "${INFRA_DIR}/config.env"

: "${PROJECT_ID:?set PROJECT_ID (or run: gcloud config set project PROJECT_ID)}"
export CLOUDSDK_CORE_PROJECT="${PROJECT_ID}"  # every gcloud call below works on this project
export CLOUDSDK_CORE_DISABLE_PROMPTS=1

log() { printf '\n== %s\n' "$*" >&2; }

sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$1" "${PROJECT_ID}"; }

sa_member() { printf 'serviceAccount:%s' "$(sa_email "$1")"; }

# The https URL of a Cloud Run service (which must exist).
service_url() { gcloud run services describe "$1" --region="${REGION}" --format='value(status.url)'; }
