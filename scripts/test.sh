#!/usr/bin/env bash
# Runs every test of the workspace. The tests start their own servers on loopback (a
# docker-registry per test, moto, kube-sim) and stop them; this installs what they run when it
# is missing: Debian's docker-registry, apache2-utils (htpasswd), busybox-static (the shell of
# the test base images, as nothing is pulled), curl, and moto in a venv.
# They also need the Docker daemon and kubectl, which this project's machines provide.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null || missing+=(git)
command -v curl >/dev/null || missing+=(curl)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
[ -x /bin/busybox ] || command -v busybox >/dev/null || missing+=(busybox-static)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package also starts a system registry on :5000; the tests never use it.
  (systemctl stop docker-registry || service docker-registry stop || pkill -f '^/usr/bin/docker-registry serve /etc/') >/dev/null 2>&1 || true
fi
if ! command -v moto_server >/dev/null; then
  [ -x .ci/.venv/bin/moto_server ] || { python3 -m venv .ci/.venv && .ci/.venv/bin/pip install -q 'moto[server]==5.2.1'; }
  export PATH="$PWD/.ci/.venv/bin:$PATH"
fi
cargo test --workspace --locked "$@"
