#!/usr/bin/env bash
# Model rollback (or any manual promotion): point the champion alias at version N with
# `churnflow promote`, run as one execution of the retrain job's image, inside the VPC that reaches
# the internal MLflow. The predict service follows the alias within its poll interval.
# Usage: infra/promote.sh N
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version="${1:?usage: promote.sh VERSION}"
log "champion -> version ${version}"
# the image has no ENTRYPOINT: the args replace its default command (the retrain job)
gcloud run jobs execute "${RETRAIN_JOB}" --region="${REGION}" --wait \
  --args="python,-m,churnflow.cli,promote,--version,${version}"
