#!/usr/bin/env bash
# Extra set-up steps that dev.sh runs after the system packages, the venv and npm. Keep each step
# idempotent and fast when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
