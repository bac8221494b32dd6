#!/usr/bin/env bash
# Checks the README's two commands on a fresh Debian machine, by hand (heavy:
# not part of CI). A container of drydock/debian:bookworm stands for the
# machine: none of the tools (no docker CLI, git, mmdebstrap, PostgreSQL,
# chromium, man, pip, check-jsonschema, C compiler), a fresh clone of HEAD,
# this machine's Rust toolchain (~/.cargo, ~/.rustup) and CA bundle
# (PIP_CERT). It reaches this machine's engine through its socket (so the
# "start dockerd when none answers" path is not exercised here: that needs a
# privileged container), shares /tmp, the host network and the process and
# host name spaces so that paths, 127.0.0.1 ports and run owners (pid@host,
# which other runs' sweeps check) mean the same to the engine, the tests and
# everyone else on the engine. Inside it
# runs scripts/sample.sh, then scripts/test.sh (or the command given).
#
#   scripts/fresh-machine-check.sh
#   FRESH_TARGET=target scripts/fresh-machine-check.sh
#       # build into this checkout's target folder (dependencies are reused,
#       # drydock's own crates rebuilt): saves disk and CPU.
#
# Removes its container and clone on exit; touches nothing else.
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
target="$work/src/target"
if [ -n "${FRESH_TARGET:-}" ]; then
  target=$(cd "$repo" && cd "$FRESH_TARGET" && pwd)
fi
# The CA bundle at a path that means the same to the engine (steps mount it).
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$work/ca.crt"
if [ $# -eq 0 ]; then
  set -- bash -c 'bash scripts/sample.sh && bash scripts/test.sh'
fi
docker run --rm --name "$name" --network host --pid host --uts host \
  --label drydock.check=fresh-machine \
  -v /tmp:/tmp -v "$target:$work/src/target" \
  -v /var/run/docker.sock:/var/run/docker.sock \
  -v "$HOME/.cargo:/root/.cargo" -v "$HOME/.rustup:/root/.rustup:ro" \
  -e PIP_CERT="$work/ca.crt" -e CARGO_HTTP_CAINFO="$work/ca.crt" \
  -e HOME=/root -e PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  -e CARGO_TERM_COLOR=never \
  -w "$work/src" drydock/debian:bookworm "$@"
