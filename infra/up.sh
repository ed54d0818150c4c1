#!/usr/bin/env bash
# From an empty project to a running ChurnFlow, in order (docs/deploy.md explains every step).
# Needs gcloud logged in as a project owner, and Docker. Every step is idempotent: rerun at will.
# Usage: infra/up.sh TAG (the image tag, e.g. the commit: git rev-parse --short=7 HEAD)
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
tag="${1:?usage: up.sh TAG}"

"${here}/apis.sh"
"${here}/registry.sh"
"${here}/storage.sh"
"${here}/accounts.sh"
"${here}/bigquery.sh"
"${here}/github.sh"
"${here}/images.sh" build "${tag}"
"${here}/images.sh" push "${tag}"
"${here}/mlflow.sh" "${tag}"
"${here}/deploy.sh" "${tag}"
"${here}/pubsub.sh"
"${here}/access.sh"
"${here}/scheduler.sh"
"${here}/alerts.sh"
