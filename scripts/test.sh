#!/usr/bin/env bash
# The test suite, as a pyramid that fails fast: unit tests first, then the
# real-engine integration and end-to-end tests. Needs a Docker Engine and the
# base images (`cargo run -- images bootstrap`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --lib --bins
cargo test --workspace --test '*' --examples
