#!/usr/bin/env bash
# Checks the README's two commands on a fresh Debian machine, by hand (heavy:
# not part of CI). A privileged container of drydock/debian:bookworm stands
# for the machine: no engine, none of the tools, no base images, a fresh
# clone of HEAD; it gets this machine's Rust toolchain (~/.cargo, ~/.rustup)
# and CA bundle (PIP_CERT) and keeps its own dockerd's data in a temporary
# folder. Inside it runs scripts/sample.sh, then scripts/test.sh (or the
# commands given as arguments).
#
#   scripts/fresh-machine-check.sh                 # both commands
#   FRESH_TARGET=target scripts/fresh-machine-check.sh
#       # reuse this checkout's target folder for the compiled dependencies
#       # (the clone is mounted at this checkout's path, so only drydock's own
#       # crates are rebuilt): saves disk and about ten minutes of CPU.
#
# Removes its container and folder on exit; touches nothing else on the
# engine.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/drydock-fresh.XXXXXX)
name="drydock-fresh-$$"
cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
git clone -q "$repo" "$work/src"
mkdir -p "$work/docker" "$work/target"
target="$work/target"
if [ -n "${FRESH_TARGET:-}" ]; then
  target=$(cd "$repo" && cd "$FRESH_TARGET" && pwd)
fi
ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
if [ $# -eq 0 ]; then
  set -- bash -c 'bash scripts/sample.sh && bash scripts/test.sh'
fi
docker run --rm --name "$name" --privileged \
  --label drydock.check=fresh-machine \
  -v "$work/src:$repo" -v "$target:$repo/target" \
  -v "$work/docker:/var/lib/docker" \
  -v "$HOME/.cargo:/root/.cargo" -v "$HOME/.rustup:/root/.rustup:ro" \
  -v "$ca:/host-ca/ca.crt:ro" \
  -e PIP_CERT=/host-ca/ca.crt -e CARGO_HTTP_CAINFO=/host-ca/ca.crt \
  -e HOME=/root -e PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  -e CARGO_TERM_COLOR=never \
  -w "$repo" drydock/debian:bookworm "$@"
