#!/usr/bin/env bash
# sidecast's one entry point for set-up: `./dev.sh demo` installs everything and runs the main job on a
# built-in sample; `./dev.sh test` installs everything and runs the whole test suite. Both are
# idempotent: a second run skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
APT_PACKAGES=(ffmpeg espeak-ng chromium sox redis-server nodejs npm)

log() { printf '\033[1m[sidecast setup]\033[0m %s\n' "$*" >&2; }

install_system() {
  local missing=()
  for bin in ffmpeg ffprobe espeak-ng chromium sox redis-server node npm; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  log "installing system packages (missing: ${missing[*]})"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
}

install_python() {
  local stamp="$VENV/.sidecast-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  log "creating virtualenv and installing sidecast (pip)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e ".[dev]"
  touch "$stamp"
}

install_node() {
  local dir="$ROOT/tests/browser"
  [ -f "$dir/package.json" ] || return 0
  if [ -d "$dir/node_modules/playwright-core" ] && [ "$dir/node_modules" -nt "$dir/package.json" ]; then return; fi
  log "installing browser-test packages (npm; the browser itself is Debian's chromium)"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent >/dev/null)
  touch "$dir/node_modules"
}

install_all() {
  install_system
  install_python
  install_node
  [ -x "$ROOT/scripts/install-extras.sh" ] && "$ROOT/scripts/install-extras.sh"
  return 0
}

case "${1:-}" in
  install)
    install_all ;;
  demo)
    install_all
    shift
    exec "$VENV/bin/sidecast" demo "$@" ;;
  test)
    install_all
    shift
    exec "$VENV/bin/python" -m pytest "$@" ;;
  *)
    echo "usage: ./dev.sh demo    # install everything, run sidecast on a built-in sample" >&2
    echo "       ./dev.sh test    # install everything, run the whole test suite" >&2
    exit 2 ;;
esac
