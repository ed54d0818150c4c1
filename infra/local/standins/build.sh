#!/usr/bin/env bash
# TEST-ENVIRONMENT SUBSTITUTE (see README.md here): make every base image that the project's Dockerfiles
# and docker-compose.local.yml name present in the local engine. An image already there is kept; one
# that can be pulled is pulled; only the others are built as offline stand-ins from a Debian 12 root
# file system, tagged with the real names. CHURNFLOW_STANDINS=never: never build one; =always: don't pull.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../../.." && pwd)"
MODE="${CHURNFLOW_STANDINS:-auto}"
PYTHON="${PYTHON:-python3}"
BASE=churnflow-standin/bookworm:base
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

say() { printf '== standins: %s\n' "$*" >&2; }

# the stand-in recipe for one image name, by repository; empty when there is none
recipe_for() {
  case "${1%:*}" in
    python) echo python ;;
    fsouza/fake-gcs-server) echo fake-gcs-server ;;
    gcr.io/google.com/cloudsdktool/google-cloud-cli) echo cloud-sdk ;;
    postgres) echo postgres ;;
  esac
}

# every base image: the FROM lines of the project's Dockerfiles and the image-only compose services
wanted_images() {
  {
    sed -n 's/^FROM \([^ ]*\).*/\1/p' "${ROOT}"/functions/*/Dockerfile "${ROOT}/infra/mlflow/Dockerfile"
    "${PYTHON}" - "${ROOT}/docker-compose.local.yml" <<'EOF'
import sys, yaml
for service in yaml.safe_load(open(sys.argv[1]))["services"].values():
    if "build" not in service and not service["image"].startswith("churnflow/"):
        print(service["image"])
EOF
  } | sort -u
}

# a digest of this folder and the host CA bundle: a stand-in built from another recipe is rebuilt
RECIPE_HASH="$(cat "${HERE}"/* "${HOST_CA}" | sha256sum | cut -c1-16)"

standin_hash() { docker image inspect --format '{{index .Config.Labels "churnflow.standin"}}' "$1" 2>/dev/null; }

build_base() {
  [[ "$(standin_hash "${BASE}")" == "${RECIPE_HASH}" ]] && return 0
  local rootfs
  rootfs="$(mktemp -d /tmp/churnflow-standin-rootfs.XXXXXX)"
  say "debootstrap bookworm (minbase) from ${MIRROR}"
  debootstrap --variant=minbase --include=ca-certificates bookworm "${rootfs}" "${MIRROR}" >/dev/null
  # trust what the host trusts (a TLS-intercepting proxy's CA included): pip in the stand-ins reads it
  install -m 0644 "${HOST_CA}" "${rootfs}/etc/ssl/certs/churnflow-standin-host-ca.crt"
  printf '[global]\ncert = /etc/ssl/certs/churnflow-standin-host-ca.crt\n' >"${rootfs}/etc/pip.conf"
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/*
  tar -C "${rootfs}" -c . | docker import \
    --change "LABEL churnflow.standin=${RECIPE_HASH}" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "${BASE}" >/dev/null
  rm -rf "${rootfs}"
}

# a build context holding the recipe and the files it copies from this machine
context_for() {
  local recipe="$1" context="$2"
  cp "${HERE}/${recipe}.Dockerfile" "${context}/Dockerfile"
  case "${recipe}" in
    fake-gcs-server)
      install -m 0755 "$("${PYTHON}" -c 'from churnflow.local.services import fake_gcs_binary; print(fake_gcs_binary())')" \
        "${context}/fake-gcs-server"
      ;;
    cloud-sdk)
      local sdk
      sdk="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || echo /usr/lib/google-cloud-sdk)"
      mkdir -p "${context}/google-cloud-sdk/bin" "${context}/google-cloud-sdk/platform"
      cp -a "${sdk}"/{.install,VERSION,properties,data,lib} "${context}/google-cloud-sdk/"
      cp -a "${sdk}/bin/gcloud" "${sdk}/bin/bootstrapping" "${context}/google-cloud-sdk/bin/"
      cp -a "${sdk}/platform/pubsub-emulator" "${context}/google-cloud-sdk/platform/"
      if [[ -d "${sdk}/platform/bundledpythonunix" ]]; then
        cp -a "${sdk}/platform/bundledpythonunix" "${context}/google-cloud-sdk/platform/"
      fi
      ;;
    postgres) cp "${HERE}/postgres-entrypoint.sh" "${context}/" ;;
  esac
}

build_standin() {
  local image="$1" recipe="$2" context
  build_base
  context="$(mktemp -d /tmp/churnflow-standin-context.XXXXXX)"
  context_for "${recipe}" "${context}"
  say "building the stand-in ${image} (${recipe}.Dockerfile)"
  DOCKER_BUILDKIT=0 docker build --quiet --label "churnflow.standin=${RECIPE_HASH}" --tag "${image}" "${context}" >/dev/null
  rm -rf "${context}"
}

for image in $(wanted_images); do
  recipe="$(recipe_for "${image}")"
  current="$(standin_hash "${image}" || true)"
  if docker image inspect "${image}" >/dev/null 2>&1 && { [[ -z "${current}" ]] || [[ "${current}" == "${RECIPE_HASH}" ]]; }; then
    continue  # the real image, or a stand-in of this recipe
  fi
  if [[ "${MODE}" != always ]] && [[ -z "${current}" ]] && timeout 60 docker pull --quiet "${image}" >/dev/null 2>&1; then
    say "pulled ${image}"
    continue
  fi
  if [[ "${MODE}" == never ]] || [[ -z "${recipe}" ]]; then
    say "${image} cannot be pulled and has no stand-in (CHURNFLOW_STANDINS=${MODE})"
    exit 1
  fi
  build_stand_in_start=${SECONDS}
  build_standin "${image}" "${recipe}"
  say "${image}: stand-in built in $((SECONDS - build_stand_in_start)) s"
done
