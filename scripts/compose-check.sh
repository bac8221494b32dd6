#!/usr/bin/env bash
# The sample product's developer environment, checked the way a developer uses
# it: Debian's docker-compose (1.29) must accept docker-compose.yml, and
# `docker-compose run --rm tests` must pass. Everything it creates is removed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "compose-check: installing docker-compose"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
docker-compose version --short

# The build reaches PyPI: hand it this machine's CA bundle (git-ignored, and
# only the deps stage sees it).
ca="${DRYDOCK_CA_BUNDLE:-${PIP_CERT:-}}"
trust=images/flask-api/.drydock-trust
created_trust=""
if [ -n "$ca" ] && [ ! -e "$trust/ca.crt" ]; then
  mkdir -p "$trust" && cp "$ca" "$trust/ca.crt" && created_trust=1
fi

export COMPOSE_PROJECT_NAME="drydock-compose-check-$$"
export API_PORT="${API_PORT:-18765}"
cleanup() {
  docker-compose down -v --remove-orphans --rmi local >/dev/null 2>&1 || true
  docker rmi -f flask-api:compose-dev >/dev/null 2>&1 || true
  if [ -n "$created_trust" ]; then rm -rf "$trust"; fi
}
trap cleanup EXIT

docker-compose config -q
start=$(date +%s)
docker-compose run --rm tests
echo "compose-check: docker-compose run --rm tests passed in $(( $(date +%s) - start ))s"
