#!/usr/bin/env bash
# Peak memory of `monoship build` for one service whose build context is large: a file of
# SIZE MiB (default 256) of random bytes that the Dockerfile copies, built RUNS times (default
# 3) with --rebuild against a local registry (Debian's docker-registry). Prints the median
# wall time and the largest peak RSS of the runs (bench/measure.py).
#
#   bench/context.sh               (BIN=path/to/monoship to measure another build of it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
size=${SIZE:-256}
runs=${RUNS:-3}
if [ -z "${BIN:-}" ]; then
  cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bin monoship
  BIN="$root/target/release/monoship"
fi

work=$(mktemp -d)
cleanup() {
  kill "${registry_pid:-}" 2>/dev/null || true
  /usr/bin/docker image ls --filter "reference=127.0.0.1:${port:-0}/big" --format '{{.Repository}}:{{.Tag}}' \
    | xargs -r /usr/bin/docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
. "$here/registry.sh"

repo="$work/repo"
mkdir -p "$repo/big" "$repo/.github"
head -c "$((size * 1024 * 1024))" /dev/urandom > "$repo/big/blob.bin"
printf 'FROM scratch\nCOPY blob.bin /blob.bin\n' > "$repo/big/Dockerfile"
printf 'services:\n  big:\n    dockerfile: big/Dockerfile\n' > "$repo/.github/monoship.yml"
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid -c commit.gpgsign=false commit -q -m big

echo "context: one file of $size MiB; $runs builds with --rebuild"
python3 "$here/measure.py" "monoship build ($size MiB)" "$runs" "$repo" -- \
  "$BIN" build --services big --rebuild --registry "127.0.0.1:$port"
