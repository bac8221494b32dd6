#!/usr/bin/env bash
# Makes sure a Docker Engine answers: installs Debian's docker.io and starts
# dockerd in the background when none does. Also installs mmdebstrap, which
# `drydock images bootstrap` uses to make the base root filesystem,
# docker-registry + apache2-utils (htpasswd), which the registry push tests
# start on loopback, and PostgreSQL, which the runner's store tests start.
set -euo pipefail

need_apt=()
command -v mmdebstrap >/dev/null 2>&1 || need_apt+=(mmdebstrap)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v git >/dev/null 2>&1 || need_apt+=(git)
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
# The runner's status-page test drives a real headless browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
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
