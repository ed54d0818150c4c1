# Sourced by infra/local/test_compose.sh: make a Docker engine reachable, and stop only the one we started.
# shellcheck shell=bash disable=SC2034  # ENGINE_SKIP and ENGINE_PID are read by the sourcing script
#
# ensure_engine: 0 when `docker info` answers (an engine that was already running, or Debian's dockerd
# started here: installed with apt-get when missing, as root only); 1 with the reason in ENGINE_SKIP otherwise.
# stop_engine: stops the dockerd that ensure_engine started (its recorded PID, command line checked first).

ENGINE_PID=""
ENGINE_SKIP=""
ENGINE_LOG="${ENGINE_LOG:-/tmp/churnflow-dockerd.log}"

engine_up() { docker info >/dev/null 2>&1; }

ensure_engine() {
  if ! command -v docker >/dev/null; then
    if [[ ${EUID} -ne 0 ]] || ! command -v apt-get >/dev/null; then
      ENGINE_SKIP="no docker client, and installing Debian's docker.io needs root and apt-get"
      return 1
    fi
  fi
  if engine_up; then
    return 0
  fi
  if [[ ${EUID} -ne 0 ]]; then
    ENGINE_SKIP="no Docker engine answers, and starting dockerd needs root"
    return 1
  fi
  if ! command -v dockerd >/dev/null; then
    if ! command -v apt-get >/dev/null; then
      ENGINE_SKIP="no Docker engine answers and no apt-get to install Debian's docker.io"
      return 1
    fi
    echo "== installing Debian's docker.io (dockerd) with apt-get" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } >&2; then
      ENGINE_SKIP="apt-get could not install docker.io"
      return 1
    fi
  fi
  echo "== starting dockerd (log: ${ENGINE_LOG})" >&2
  dockerd --host unix:///var/run/docker.sock >"${ENGINE_LOG}" 2>&1 &
  ENGINE_PID=$!
  local waited=0
  until engine_up; do
    if ! kill -0 "${ENGINE_PID}" 2>/dev/null || ((waited >= 60)); then
      ENGINE_SKIP="dockerd did not come up within 60 s (this machine may not allow it); last lines of ${ENGINE_LOG}: $(tail -n 3 "${ENGINE_LOG}" | tr '\n' ' ')"
      stop_engine
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

stop_engine() {
  [[ -n ${ENGINE_PID} ]] || return 0
  # the PID is ours only while it still runs dockerd
  if [[ -r /proc/${ENGINE_PID}/cmdline ]] && tr '\0' ' ' <"/proc/${ENGINE_PID}/cmdline" | grep -q '^dockerd '; then
    echo "== stopping the dockerd started here (pid ${ENGINE_PID})" >&2
    kill -TERM "${ENGINE_PID}"
    local waited=0
    while kill -0 "${ENGINE_PID}" 2>/dev/null && ((waited < 30)); do
      sleep 1
      waited=$((waited + 1))
    done
  fi
  ENGINE_PID=""
}
