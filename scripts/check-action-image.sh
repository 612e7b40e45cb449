#!/usr/bin/env bash
# Checks what an action image holds, the same way for the release image (built from the
# Dockerfile by .github/workflows/release.yml) and for the local one
# (scripts/local-action-image.sh): monoship as the entrypoint, at this checkout's version, and
# the git and docker CLIs it runs. Nothing in the image needs a shell, so each tool is run as
# the entrypoint.
#
#   scripts/check-action-image.sh IMAGE            # buildx optional (absent on this machine)
#   REQUIRE_BUILDX=1 scripts/check-action-image.sh IMAGE   # the release: buildx must be there
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:?usage: $0 IMAGE}
say() { echo "check-action-image: $*" >&2; }
fail() { say "$*"; exit 1; }
run() { docker run --rm --network none --entrypoint "$@"; }

want=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
entrypoint=$(docker image inspect --format '{{json .Config.Entrypoint}}' "$image")
[ "$entrypoint" = '["/usr/local/bin/monoship"]' ] || fail "entrypoint is $entrypoint, not monoship"
got=$(docker run --rm --network none "$image" --version) || fail "monoship --version failed"
[ "$got" = "monoship $want" ] || fail "the image says '$got', the checkout is $want"
run git "$image" --version >/dev/null || fail "git does not run in the image"
run docker "$image" --version >/dev/null || fail "the docker CLI does not run in the image"
if run docker "$image" buildx version >/dev/null 2>&1; then
  buildx=yes
elif [ "${REQUIRE_BUILDX:-}" = 1 ]; then
  fail "the buildx plugin is missing (multi-platform builds and the registry cache need it)"
else
  buildx=no
fi
say "$image: $got, git and docker run, buildx: $buildx"
