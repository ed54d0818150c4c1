#!/usr/bin/env bash
# Workload Identity Federation: GitHub Actions runs of GITHUB_REPOSITORY's main branch may act as the
# deployer account, with short-lived tokens and no key file. Does nothing when GITHUB_REPOSITORY is empty.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -z "${GITHUB_REPOSITORY}" ]]; then
  log "GITHUB_REPOSITORY is empty: no GitHub federation"
  exit 0
fi

log "Workload Identity Federation for ${GITHUB_REPOSITORY}"
if ! gcloud iam workload-identity-pools describe "${WIF_POOL}" --location=global --format=none 2>/dev/null; then
  gcloud iam workload-identity-pools create "${WIF_POOL}" --location=global --display-name="GitHub Actions"
fi
if ! gcloud iam workload-identity-pools providers describe "${WIF_PROVIDER}" \
  --workload-identity-pool="${WIF_POOL}" --location=global --format=none 2>/dev/null; then
  gcloud iam workload-identity-pools providers create-oidc "${WIF_PROVIDER}" \
    --workload-identity-pool="${WIF_POOL}" --location=global \
    --issuer-uri=https://token.actions.githubusercontent.com \
    --attribute-mapping=google.subject=assertion.sub,attribute.repository=assertion.repository,attribute.ref=assertion.ref \
    --attribute-condition="assertion.repository == '${GITHUB_REPOSITORY}' && assertion.ref == 'refs/heads/main'"
fi
pool="$(gcloud iam workload-identity-pools describe "${WIF_POOL}" --location=global --format='value(name)')"
gcloud iam service-accounts add-iam-policy-binding "$(sa_email "${DEPLOYER_SA}")" \
  --member="principalSet://iam.googleapis.com/${pool}/attribute.repository/${GITHUB_REPOSITORY}" \
  --role=roles/iam.workloadIdentityUser --format=none

log "set these variables in the GitHub repository (Settings > Variables > Actions):
  GCP_WORKLOAD_IDENTITY_PROVIDER=${pool}/providers/${WIF_PROVIDER}
  GCP_DEPLOYER_SERVICE_ACCOUNT=$(sa_email "${DEPLOYER_SA}")"
