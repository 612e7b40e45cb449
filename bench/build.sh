#!/usr/bin/env bash
# Benchmarks `monoship build` on the example shop with one changed service (email) against
# BuildKit through the docker CLI (`DOCKER_BUILDKIT=1 docker build` with the same two OCI
# labels and the same two tags, then `docker push` of both), on the local Docker daemon and a
# local registry (Debian's docker-registry), alternating in each round; then a re-run with
# nothing changed. Prints the medians and the median of the per-round ratios.
#
#   bench/build.sh            (RUNS=7 by default; DOCKER=/usr/bin/docker)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=${RUNS:-7}
docker=${DOCKER:-/usr/bin/docker}
cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bin monoship
bin="$root/target/release/monoship"

work=$(mktemp -d)
trap 'kill ${registry_pid:-} 2>/dev/null; rm -rf "$work"' EXIT
. "$here/registry.sh"

repo="$work/shop"
cp -r "$root/examples/shop" "$repo"
git() { command git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid -c commit.gpgsign=false "$@"; }
git init -q -b main && git add -A && git commit -q -m base
"$bin" build -C "$repo" --services all --registry "127.0.0.1:$port" >/dev/null 2>&1   # warm the daemon's base layers

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
mono=(); plain=(); rerun=(); ratio=()
for i in $(seq "$runs"); do
  echo "run $i $(date +%s%N)" >> "$repo/src/email/templates/welcome.txt"
  git commit -q -am "email change $i"
  t0=$(now); "$bin" build -C "$repo" --base HEAD~1 --registry "127.0.0.1:$port" >/dev/null 2>&1; t1=$(now)
  m=$(ms "$t0" "$t1"); mono+=("$m")
  t0=$(now); "$bin" build -C "$repo" --base HEAD~1 --registry "127.0.0.1:$port" >/dev/null 2>&1; t1=$(now)
  rerun+=("$(ms "$t0" "$t1")")
  echo "plain $i $(date +%s%N)" >> "$repo/src/email/templates/welcome.txt"
  image="127.0.0.1:$port/plain/email"
  t0=$(now)
  DOCKER_BUILDKIT=1 "$docker" build -q \
    --label org.opencontainers.image.revision="$(git rev-parse HEAD)" \
    --label org.opencontainers.image.created="$(git show -s --format=%cI HEAD)" \
    -t "$image:src-$i" -t "$image:$i" "$repo/src/email" >/dev/null 2>&1
  "$docker" push -q "$image:$i" >/dev/null
  "$docker" push -q "$image:src-$i" >/dev/null
  t1=$(now)
  p=$(ms "$t0" "$t1"); plain+=("$p")
  ratio+=("$(awk -v a="$m" -v b="$p" 'BEGIN { printf "%.2f", a / b }')")
  git checkout -q -- .
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), docker $("$docker" version --format '{{.Server.Version}}')"
echo "monoship build, 1 of 4 services changed:      median $(median "${mono[@]}") ms  (${mono[*]})"
echo "DOCKER_BUILDKIT=1 docker build + 2 pushes:     median $(median "${plain[@]}") ms  (${plain[*]})"
echo "ratio monoship / docker, per round:           median $(median "${ratio[@]}")  (${ratio[*]})"
echo "monoship build re-run, nothing to build:      median $(median "${rerun[@]}") ms  (${rerun[*]})"
