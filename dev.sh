#!/usr/bin/env bash
# sidecast's one entry point for set-up: `./dev.sh demo` installs everything and runs the main job on a
# built-in sample; `./dev.sh test` installs everything and runs the whole test suite. Both are
# idempotent: a second run skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
# binary -> Debian package that provides it. Only the packages of missing binaries are installed: many
# machines carry Node.js from NodeSource (which bundles npm), and asking apt for Debian's `npm` beside it
# fails with "held broken packages".
declare -A APT_FOR=(
  [ffmpeg]=ffmpeg [ffprobe]=ffmpeg [espeak-ng]=espeak-ng [chromium]=chromium [sox]=sox
  [redis-server]=redis-server [node]=nodejs [npm]=npm
)

log() { printf '\033[1m[sidecast setup]\033[0m %s\n' "$*" >&2; }

# The Debian packages install_system would ask apt for, one per line (also `./dev.sh plan`: what a set-up
# on this machine would install, without installing it).
system_plan() {
  local pkgs=()
  for bin in "${!APT_FOR[@]}"; do
    command -v "$bin" >/dev/null 2>&1 && continue
    local pkg=${APT_FOR[$bin]}
    # npm ships inside NodeSource's nodejs: never ask apt for Debian's npm next to a node that exists
    if [ "$bin" = npm ] && command -v node >/dev/null 2>&1; then
      log "node is installed but npm is not; install npm for your Node.js (e.g. NodeSource's nodejs bundles it)"
      continue
    fi
    [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
  done
  [ ${#pkgs[@]} -eq 0 ] || printf '%s\n' "${pkgs[@]}" | sort
}

install_system() {
  local pkgs=()
  mapfile -t pkgs < <(system_plan)
  if [ ${#pkgs[@]} -eq 0 ]; then return; fi
  log "installing system packages ${pkgs[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
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
  plan)
    system_plan ;;
  test)
    install_all
    shift
    # Three workers, each taking whole test files (module fixtures are built once): most tests wait on
    # real time (paced streams, browsers): even with three the suite used ~1.5 of the 2 cores. Three
    # took it from 915 s to 661-768 s (2026-12-01); SIDECAST_TEST_WORKERS=2 gives the old
    # split, `./dev.sh test -n 0` runs serially.
    # Files go out in collection order, which tests/conftest.py sets longest first (tests/file_costs.txt):
    # xdist's own order (most tests first) left the long few-test files for the end, one worker idle.
    exec "$VENV/bin/python" -m pytest -n "${SIDECAST_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder "$@" ;;
  *)
    echo "usage: ./dev.sh demo    # install everything, run sidecast on a built-in sample" >&2
    echo "       ./dev.sh test    # install everything, run the whole test suite" >&2
    exit 2 ;;
esac
