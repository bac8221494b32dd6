#!/usr/bin/env bash
# The toy pipeline as a plain docker-CLI script, one thing after another:
# pyflakes, unit pytest (both `docker run --rm`, no network), then a network,
# PostgreSQL started and polled with `psql -h db ... SELECT 1` every 250 ms,
# then the integration pytest. Containers and the network are removed on exit.
#
# Environment: BENCH_TOY_IMAGE (default drydock-bench/toy:local),
# TOY_ID (unique name part, default toy-seq-<pid>), TOY_LABEL (a label put on
# everything it creates, default drydock-bench.toy=<TOY_ID>).
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
image=${BENCH_TOY_IMAGE:-drydock-bench/toy:local}
id=${TOY_ID:-toy-seq-$$}
label=${TOY_LABEL:-drydock-bench.toy=$id}
net=$id-net
db=$id-db

cleanup() {
    set +e
    docker rm -f "$db" >/dev/null 2>&1
    docker network rm "$net" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

docker run --rm --label "$label" --network none -v "$src:/src:ro" -w /src "$image" pyflakes toy tests
docker run --rm --label "$label" --network none -v "$src:/src:ro" -w /src "$image" pytest -q tests/unit

docker network create --label "$label" "$net" >/dev/null
docker run -d --label "$label" --name "$db" --network "$net" --network-alias db \
    -e POSTGRES_USER=app -e POSTGRES_PASSWORD=app -e POSTGRES_DB=app \
    drydock/postgres:15 postgres -c fsync=off >/dev/null
deadline=$((SECONDS + 60))
until [ "$(docker exec -e PGPASSWORD=app -e PGCONNECT_TIMEOUT=3 "$db" \
        psql -h db -U app -d app -tAc 'SELECT 1' 2>/dev/null | tr -d '[:space:]')" = 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "db not ready" >&2; exit 1; }
    sleep 0.25
done
docker run --rm --label "$label" --network "$net" -v "$src:/src:ro" -w /src \
    -e DATABASE_URL=postgresql://app:app@db:5432/app "$image" pytest -q tests/integration
