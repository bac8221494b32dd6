#!/usr/bin/env bash
# The README's second command: the whole test suite, as a pyramid that fails
# fast: unit tests first, then the real-engine integration and end-to-end
# tests. Prepares the machine first, as scripts/sample.sh does (engine,
# tools, base images; quick when already done). .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prepare.sh
cargo test --workspace --lib --bins
cargo test --workspace --test '*' --examples
