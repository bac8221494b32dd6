#!/usr/bin/env bash
# The README's first command: run the sample product's pipeline on this
# machine. Installs and starts the engine when none answers and builds the
# base images when missing (scripts/prepare.sh); then `drydock run`.
# Arguments are passed to `drydock run` (e.g. --json, --logs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
exec "$DRYDOCK" run "$@" pipelines/flask-api.yml
