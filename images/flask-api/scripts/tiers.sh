#!/bin/sh
# Run flake8 then the given test tiers in order (default: unit integration e2e),
# one JUnit XML per tier under ${RESULTS_DIR:-/results}. Stops at the first
# failing tier. Used by `docker-compose run --rm tests`; works in a venv too.
set -eu
cd "$(dirname "$0")/.."
results="${RESULTS_DIR:-/results}"
mkdir -p "$results"
[ "$#" -gt 0 ] || set -- unit integration e2e
echo "== flake8"
flake8
for tier in "$@"; do
    echo "== $tier"
    pytest -p no:cacheprovider "tests/$tier" --junitxml="$results/$tier.xml"
done
