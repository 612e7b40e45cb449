#!/usr/bin/env bash
# Builds the action's container image from this checkout without pulling anything, and tags it
# `monoship:local` (or the first argument, or $MONOSHIP_IMAGE).
#
#   scripts/local-action-image.sh [TAG]
#   MONOSHIP_BINARY=target/debug/monoship scripts/local-action-image.sh   # skip the release build
#
# Why this is not the release Dockerfile: that one compiles a static (musl) binary in the rust
# image and takes git, the docker CLI and buildx from pulled images, which a machine without
# registry access cannot do. This image has the same contents taken from the host
# instead: a glibc monoship, the host's git and docker CLI (and buildx, when installed) with
# every shared library they load (from ldd, at the same paths) and the host's CA certificates,
# imported as a single FROM-scratch layer. It has no shell and no /etc/passwd: nothing in it
# needs either (HOME is set, and git and docker never look the user up then).
set -euo pipefail
binary=${MONOSHIP_BINARY:+$(realpath -m "$MONOSHIP_BINARY")}
cd "$(dirname "$0")/.."
tag=${1:-${MONOSHIP_IMAGE:-monoship:local}}
say() { echo "local-action-image: $*" >&2; }

for tool in docker git ldd tar; do
  command -v "$tool" >/dev/null || { say "$tool is needed on this machine"; exit 2; }
done
if [ -z "$binary" ]; then
  say "building monoship (cargo build --release; set MONOSHIP_BINARY to use a built one)"
  cargo build --release --locked --bin monoship
  binary=${CARGO_TARGET_DIR:-target}/release/monoship
fi
[ -x "$binary" ] || { say "no monoship binary at $binary"; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# put SRC DEST: copy a file (following symlinks) to DEST inside the image.
put() { mkdir -p "$root$(dirname "$2")" && cp -L "$1" "$root$2"; }

put "$binary" /usr/local/bin/monoship
# Debug info is most of a debug build's size and nothing the image needs (symbols stay).
if command -v strip >/dev/null; then strip --strip-debug "$root/usr/local/bin/monoship"; fi
put "$(command -v git)" /usr/bin/git
put "$(command -v docker)" /usr/bin/docker
for dir in /usr/local/libexec/docker/cli-plugins /usr/libexec/docker/cli-plugins \
           /usr/local/lib/docker/cli-plugins /usr/lib/docker/cli-plugins; do
  if [ -x "$dir/docker-buildx" ]; then
    put "$dir/docker-buildx" /usr/libexec/docker/cli-plugins/docker-buildx
    break
  fi
done
# Every shared library and the dynamic loader, where the binaries look for them. Builtins are
# all of git that monoship runs (diff, cat-file, rev-parse, merge-base, show), so no git-core.
for exe in "$root"/usr/local/bin/* "$root"/usr/bin/* "$root"/usr/libexec/docker/cli-plugins/*; do
  [ -e "$exe" ] || continue
  ldd "$exe" 2>/dev/null | grep -o '/[^ ]*' || true # static binaries list nothing
done | sort -u | while read -r lib; do put "$lib" "$lib"; done
put /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
install -d -m 1777 "$root/tmp"
install -d -m 0700 "$root/root"

say "importing $(du -sh "$root" | cut -f1) as $tag"
previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
tar --create --directory "$root" --numeric-owner --owner=0 --group=0 . |
  docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV HOME=/root' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENTRYPOINT ["/usr/local/bin/monoship"]' \
    --message "monoship action image from local source" \
    - "$tag" >/dev/null
# The image this tag named before is garbage now (unless something else still uses it).
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker rmi "$previous" >/dev/null 2>&1 || true
fi
say "built $tag (git $(git --version | cut -d' ' -f3), $(docker --version | cut -d, -f1))"
