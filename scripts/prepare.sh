# Everything drydock needs on a fresh Debian machine, done once and quick
# when already done (source it: `source scripts/prepare.sh`):
#   - a Docker Engine that answers (scripts/ensure-engine.sh installs Debian's
#     docker.io and starts dockerd when none does, plus the tools tests use);
#   - this machine's CA bundle handed to builds and steps that reach PyPI
#     (DRYDOCK_CA_BUNDLE, when the system bundle exists and nothing set one);
#   - the drydock binary: the debug build (`cargo build -p drydock-cli`), the
#     one the test suite compiles anyway, so the two commands share one build
#     and CI stays in one profile (a release build would double the compile
#     time); DRYDOCK names it;
#   - the base images (drydock images bootstrap: skips those that exist).
# Used by scripts/sample.sh (the README's first command) and scripts/test.sh
# (the second, which .ci/run calls).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${DRYDOCK_CA_BUNDLE:-}" ] && [ -z "${PIP_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export DRYDOCK_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "prepare: cargo is missing: install the Rust toolchain (rustup, Rust 1.89 or later) first" >&2
  exit 2
fi

bash scripts/ensure-engine.sh
bash scripts/ensure-python-tools.sh
cargo build -p drydock-cli
DRYDOCK="$PWD/target/debug/drydock"
export DRYDOCK
"$DRYDOCK" images bootstrap
