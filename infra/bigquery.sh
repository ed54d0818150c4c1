#!/usr/bin/env bash
# BigQuery, the outcomes engine on Google Cloud: one private dataset holding three external tables over
# the bucket (GCS stays the system of record; nothing is loaded or copied):
#   request_log  gs://BUCKET/requests/dt=YYYY-MM-DD/hour=HH/*.jsonl.gz  (a partition filter is required)
#   labels       gs://BUCKET/labels/dt=YYYY-MM-DD/*.jsonl.gz            (dt: the import day)
#   labelled     gs://BUCKET/labelled/dt=YYYY-MM-DD/*.parquet           (dt: the request's day; a filter is required)
# `labelled` holds the examples each label import joins once (churnflow labels import); the monitor's
# and the retrain's queries read it, and `labels` only for which imports committed.
# Columns, types and partition keys come from shared/churnflow/outcomes/tables.py (the engine's own
# definition), never from here. Plain external tables are read with the caller's credentials: the
# monitor and the job read the objects through the bucket role of access.sh, and get read on this
# dataset here (their project role bigquery.jobUser is in accounts.sh). Converges on every run.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dataset="${PROJECT_ID}:${BIGQUERY_DATASET}"
python="${CHURNFLOW_PYTHON:-${REPO_ROOT}/.venv/bin/python}"  # any Python with ChurnFlow's dependencies
command -v "${python}" >/dev/null || {
  echo "bigquery.sh reads the table schemas with ChurnFlow's Python: run make setup, or set CHURNFLOW_PYTHON" >&2
  exit 1
}
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

tables() { PYTHONPATH="${REPO_ROOT}/shared" "${python}" -m churnflow.outcomes.tables "$@"; }

exists() { bq --project_id="${PROJECT_ID}" --format=none show "$@" >/dev/null 2>&1; }

log "BigQuery dataset ${dataset} in ${BIGQUERY_LOCATION}: private (project roles only), tables never expire"
description="ChurnFlow outcomes: external tables over gs://${BUCKET} (infra/bigquery.sh)"
if ! exists --dataset "${dataset}"; then
  bq --project_id="${PROJECT_ID}" --location="${BIGQUERY_LOCATION}" mk --dataset \
    --description="${description}" "${dataset}"
fi
bq --project_id="${PROJECT_ID}" update --dataset --description="${description}" \
  --default_table_expiration=0 "${dataset}"

# external_table TABLE PREFIX REQUIRE_FILTER: the definition written by `bq mkdef` (hive partitioning
# CUSTOM: the keys and their types are spelled in the source URI prefix, so they never depend on which
# objects exist when the table is made; the source format comes from the shared definition too), plus
# what mkdef has no flag for: JSON-lines objects are gzip, and a few unreadable lines are skipped rather
# than failing every query whose window holds them. Parquet is typed: neither applies.
external_table() {
  local table=$1 prefix=$2 require_filter=$3
  local schema="${work}/${table}.schema.json" definition="${work}/${table}.json" format
  format="$(tables format "${table}")"
  tables schema "${table}" >"${schema}"
  local options=(--source_format="${format}" --noautodetect)
  [[ "${format}" == PARQUET ]] || options+=(--ignore_unknown_values)
  bq mkdef "${options[@]}" \
    --hive_partitioning_mode=CUSTOM \
    --hive_partitioning_source_uri_prefix="gs://${BUCKET}/${prefix}$(tables partitions "${table}")" \
    "${require_filter}" "gs://${BUCKET}/${prefix}*" "${schema}" >"${definition}.mkdef"
  "${python}" -c 'import json, sys
definition = json.load(open(sys.argv[1]))
if definition["sourceFormat"] != "PARQUET":
    definition.update(compression="GZIP", maxBadRecords=int(sys.argv[2]))
json.dump(definition, open(sys.argv[3], "w"), indent=2)' "${definition}.mkdef" "${BIGQUERY_MAX_BAD_RECORDS}" "${definition}"

  log "external table ${dataset}.${table} over gs://${BUCKET}/${prefix}"
  local what="ChurnFlow ${table}: ${format} objects under gs://${BUCKET}/${prefix} (infra/bigquery.sh)"
  if exists "${dataset}.${table}"; then
    bq --project_id="${PROJECT_ID}" update --table --external_table_definition="${definition}" \
      --description="${what}" "${dataset}.${table}"
  else
    bq --project_id="${PROJECT_ID}" mk --table --external_table_definition="${definition}" \
      --description="${what}" "${dataset}.${table}"
  fi
}

# every query of the request log and of the labelled examples must name its days: a forgotten filter
# would scan all of them. The labels objects are read for their names only, from the window's first
# day on (an import names requests logged before it): no filter required.
external_table request_log "${REQUEST_LOG_PREFIX}" --require_hive_partition_filter
external_table labels "${LABELS_PREFIX}" --norequire_hive_partition_filter
external_table labelled "${LABELLED_PREFIX}" --require_hive_partition_filter

log "the monitor and the retrain job may read the dataset's tables (and nothing else in BigQuery)"
for account in "${MONITOR_SA}" "${RETRAIN_SA}"; do
  bq --project_id="${PROJECT_ID}" add-iam-policy-binding --dataset \
    --member="$(sa_member "${account}")" --role=roles/bigquery.dataViewer "${dataset}"
done
