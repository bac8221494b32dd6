#!/usr/bin/env bash
# Makes sure a Docker Engine answers: installs Debian's docker.io and starts
# dockerd in the background when none does. Also installs mmdebstrap, which
# `drydock images bootstrap` uses to make the base root filesystem,
# docker-registry + apache2-utils (htpasswd), which the registry push tests
# start on loopback, PostgreSQL, which the runner's store tests start, and
# what other tests use (chromium, man, check-jsonschema).
# Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
# cargo links with the C toolchain (rustup does not bring one); the bundled
# SQLite is compiled with it too.
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v git >/dev/null 2>&1 || need_apt+=(git)
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
# The runner's status-page test drives a real headless browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The man page test renders with man(1); completions are tested in bash.
command -v man >/dev/null 2>&1 || need_apt+=(man-db)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# The GitHub job summary `drydock ci export github` writes is a jq program:
# a test runs it on a real summary.json.
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# The runner's store and fleet tests start throw-away PostgreSQL servers
# (initdb into a temporary folder, a free loopback port). Debian's package
# would also create and start a cluster of its own on port 5432: not wanted.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/drydock.conf
  need_apt+=(postgresql)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ensure-engine: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The schema tests validate with a real JSON Schema validator (PyPI; pip
# reads the proxy's CA from PIP_CERT when set). Debian's python3 refuses a
# system-wide install (PEP 668) unless told to.
if ! command -v check-jsonschema >/dev/null 2>&1; then
  echo "ensure-engine: installing check-jsonschema"
  python3 -m pip install --quiet --disable-pip-version-check check-jsonschema \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages check-jsonschema
fi

if docker info >/dev/null 2>&1; then
  echo "ensure-engine: engine answers ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi
echo "ensure-engine: starting dockerd"
nohup dockerd >/tmp/drydock-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "ensure-engine: engine up ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
echo "ensure-engine: dockerd did not answer within 60s; its log:" >&2
tail -30 /tmp/drydock-dockerd.log >&2
exit 3
