#!/usr/bin/env bash
# Python tools the test suite runs as real validators, installed from PyPI
# when missing (idempotent; safe to run beside scripts/prepare.sh, which may
# install some of the same):
# - check-jsonschema: validates the hosted CI files `drydock ci export`
#   writes against the providers' published JSON Schemas (vendored in it);
# - groovy-parser: a Groovy 3 parser, the offline syntax check of the
#   generated Jenkinsfile (scripts/check-jenkinsfile.py);
# - prometheus-client: its text-format parser reads the runner's /metrics.
set -euo pipefail

py=python3
command -v "$py" >/dev/null 2>&1 || { echo "ensure-python-tools: python3 is missing" >&2; exit 3; }

install() {
  # PEP 668 interpreters (Debian's) refuse plain installs: fall back to
  # --break-system-packages, which only they need.
  "$py" -m pip install --quiet "$@" 2>/dev/null \
    || "$py" -m pip install --quiet --break-system-packages "$@"
}

if ! "$py" -m pip --version >/dev/null 2>&1; then
  echo "ensure-python-tools: installing python3-pip"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-pip >/dev/null
fi

need=()
if ! command -v check-jsonschema >/dev/null 2>&1 && ! "$py" -c 'import check_jsonschema' 2>/dev/null; then
  need+=(check-jsonschema)
fi
"$py" -c 'import groovy_parser' 2>/dev/null || need+=(groovy-parser)
"$py" -c 'import prometheus_client' 2>/dev/null || need+=(prometheus-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-python-tools: installing ${need[*]}"
  install "${need[@]}"
fi
echo "ensure-python-tools: check-jsonschema, groovy-parser and prometheus-client present"
