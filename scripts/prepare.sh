# Everything drydock needs on a fresh Debian machine, done once and quick
# when already done (source it: `source scripts/prepare.sh [release|debug]`):
#   - a Docker Engine that answers (scripts/ensure-engine.sh installs Debian's
#     docker.io and starts dockerd when none does, plus the tools tests use);
#   - this machine's CA bundle handed to builds and steps that reach PyPI
#     (DRYDOCK_CA_BUNDLE, when the system bundle exists and nothing set one);
#   - the drydock binary (cargo build, in the given profile; default release);
#   - the base images (drydock images bootstrap: skips those that exist).
# Used by scripts/sample.sh (the README's first command) and scripts/test.sh
# (the second, which .ci/run calls).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile="${1:-release}"
if [ -z "${DRYDOCK_CA_BUNDLE:-}" ] && [ -z "${PIP_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export DRYDOCK_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "prepare: cargo is missing: install the Rust toolchain (rustup, Rust 1.89 or later) first" >&2
  exit 2
fi

bash scripts/ensure-engine.sh
if [ "$profile" = release ]; then
  cargo build --release -p drydock-cli
  DRYDOCK="$PWD/target/release/drydock"
else
  cargo build -p drydock-cli
  DRYDOCK="$PWD/target/debug/drydock"
fi
export DRYDOCK
"$DRYDOCK" images bootstrap
