#!/usr/bin/env bash
# The baseline: the work of pipelines/flask-api.yml done by a plain shell
# script with the docker CLI, strictly one thing after another (no overlap of
# services with builds, no concurrent steps).
#
#   build dev -> flake8, unit on the source mounted read-only (dev image)
#   build production -> build test
#   flake8, unit (test image), prod-image-check (production image)
#   postgres on a network, poll `psql -h db ... SELECT 1` -> integration
#   api from production (same env), poll health -> e2e -> perf
#   tag the production image (sha, run id, staging)
#
# Environment (all optional; bench/run.py sets them):
#   SEQ_ID          unique id for container / network / tag names (default seq-<pid>)
#   SEQ_BASE_IMAGE  BASE_IMAGE build arg (default drydock/python:3.11)
#   SEQ_REPO        repository of the build tags (default drydock-bench-seq/<id>)
#   SEQ_RELEASE     repository of the release tags (default <SEQ_REPO>-release)
#   SEQ_LOG         where build / step output goes (default /dev/null)
#
# Builds use the classic builder (DOCKER_BUILDKIT=0): the docker CLI here has no
# buildx plugin, so a plain script cannot use BuildKit (drydock talks to the
# daemon's BuildKit through the API; DRYDOCK_BUILDER=classic compares like for like). The
# images stay (a re-run uses docker's layer cache); containers, the network and
# the trust file in the build context are removed on exit.
set -euo pipefail

root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
ctx=$root/images/flask-api
id=${SEQ_ID:-seq-$$}
base=${SEQ_BASE_IMAGE:-drydock/python:3.11}
repo=${SEQ_REPO:-drydock-bench-seq/$id}
release=${SEQ_RELEASE:-$repo-release}
log=${SEQ_LOG:-/dev/null}
sha=$(git -C "$root" rev-parse HEAD)
net=bench-$id
db=$id-db
api=$id-api
export DOCKER_BUILDKIT=0

results=$(mktemp -d /tmp/drydock-bench-seq.XXXXXX)
chmod 0777 "$results"
made_trust=0

cleanup() {
    set +e
    docker rm -f "$db" "$api" >/dev/null 2>&1
    docker network rm "$net" >/dev/null 2>&1
    if [ "$made_trust" = 1 ]; then rm -rf "$ctx/.drydock-trust"; fi
    rm -rf "$results"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# "== <epoch seconds> <what>" markers let bench/run.py split the time by phase
say() { printf '== %s %s\n' "$(date +%s.%N)" "$*" >>"$log"; }

# The CA bundle goes into the context, as drydock does for `trust: true`.
if [ ! -e "$ctx/.drydock-trust" ]; then
    mkdir "$ctx/.drydock-trust"
    made_trust=1
fi
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ctx/.drydock-trust/ca.crt"

build() { # target
    say "build $1"
    docker build --target "$1" -t "$repo:$1" \
        --build-arg "APP_VERSION=$sha" --build-arg "BASE_IMAGE=$base" \
        --label "drydock-bench.seq=$repo" \
        -f "$ctx/Dockerfile" "$ctx" >>"$log" 2>&1
}

step() { # name, docker run arguments...
    say "step $1"
    shift
    docker run --rm "$@" >>"$log" 2>&1
}

# tier pre-build: the source, read-only, in the dev image
build dev
step flake8 --network none -v "$ctx:/src:ro" -w /src "$repo:dev" flake8
mkdir -m 0777 "$results/pre-unit"
step unit --network none -v "$ctx:/src:ro" -w /src -e PYTHONDONTWRITEBYTECODE=1 \
    -v "$results/pre-unit:/results" \
    "$repo:dev" pytest -p no:cacheprovider tests/unit --junitxml=/results/junit.xml

# tier build
build production
build test

# tier image: the built images themselves
step flake8-image --network none "$repo:test" flake8
mkdir -m 0777 "$results/image-unit"
step unit-image --network none -v "$results/image-unit:/results" \
    "$repo:test" pytest tests/unit --junitxml=/results/junit.xml
step prod-image-check --network none "$repo:production" python -c "
import importlib.util as u, os, sys
bad = [m for m in ('pytest', 'flake8', 'pyflakes', 'pycodestyle', 'pluggy') if u.find_spec(m)]
uid = os.geteuid()
ca = [p for p in ('/tmp/build', '/.drydock-trust') if os.path.exists(p)]
print('test tools:', bad or 'none', '| uid:', uid, '| build CA:', ca or 'none')
sys.exit(1 if bad or uid == 0 or ca else 0)"

# tier integration: postgres on a network, ready when psql over TCP answers
say "service db"
docker network create "$net" >/dev/null
docker run -d --name "$db" --network "$net" --network-alias db \
    -e POSTGRES_USER=app -e POSTGRES_PASSWORD=app -e POSTGRES_DB=app \
    drydock/postgres:15 postgres -c fsync=off >/dev/null
deadline=$((SECONDS + 60))
until [ "$(docker exec -e PGPASSWORD=app -e PGCONNECT_TIMEOUT=3 "$db" \
        psql -h db -U app -d app -tAc 'SELECT 1' 2>/dev/null | tr -d '[:space:]')" = 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "db not ready" >&2; exit 1; }
    sleep 0.25
done
mkdir -m 0777 "$results/integration"
step integration --network "$net" -v "$results/integration:/results" \
    -e DATABASE_URL=postgresql://app:app@db:5432/app \
    "$repo:test" pytest tests/integration --junitxml=/results/junit.xml

# tier e2e: the api from the production image, ready when docker says healthy
# (health interval 500ms, as drydock sets for `ready: {healthcheck: true, interval: 500ms}`)
say "service api"
docker run -d --name "$api" --network "$net" --network-alias api \
    --health-interval 500ms \
    -e DATABASE_URL=postgresql://app:app@db:5432/app -e MIGRATE_ON_START=1 \
    -e DB_WAIT_SECONDS=60 -e WEB_CONCURRENCY=2 \
    "$repo:production" >/dev/null
deadline=$((SECONDS + 90))
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$api")" = healthy ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "api not healthy" >&2; exit 1; }
    [ "$(docker inspect -f '{{.State.Running}}' "$api")" = true ] || { echo "api exited" >&2; exit 1; }
    sleep 0.5
done
mkdir -m 0777 "$results/e2e" "$results/perf"
step e2e --network "$net" -v "$results/e2e:/results" -e BASE_URL=http://api:8000 \
    "$repo:test" pytest tests/e2e --junitxml=/results/junit.xml
step perf --network "$net" -v "$results/perf:/results" -e BASE_URL=http://api:8000 \
    -e PERF_REQUESTS=500 -e PERF_CONCURRENCY=8 -e PERF_MAX_SECONDS=60 \
    -e "PERF_P95_MS=${PERF_P95_MS:-500}" -e PERF_RESULTS=/results/perf.json \
    "$repo:test" pytest tests/perf --junitxml=/results/junit.xml

# release: tag the production image
for tag in "$sha" "$id" staging; do
    docker tag "$repo:production" "$release:$tag"
done
say "done"
