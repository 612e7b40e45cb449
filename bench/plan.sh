#!/usr/bin/env bash
# Benchmarks `monoship plan` against dorny/paths-filter on the synthetic monorepo of
# bench/make_bigrepo.sh, in the same run, on the same repository, with local git.
#
#   bench/plan.sh                 default size (20,050 files, 5,000 changed, 200 services)
#   bench/plan.sh xl              10x (100k files, 50k changed, 1,000 services)
#   RUNS=20 bench/plan.sh         more runs per tool (default 10)
#
# paths-filter is not part of this repository: point PATHS_FILTER_DIST at the committed
# dist/index.js of a paths-filter checkout to include it (it runs with the local `node`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
size=${1:-default}
runs=${RUNS:-10}
out="$here/out"
mkdir -p "$out"

case "$size" in
  default) export N_SERVICES=200 N_TOUCHED=50 ;;
  xl) export N_SERVICES=1000 N_TOUCHED=500 ;;
  *) echo "size must be default or xl" >&2; exit 2 ;;
esac
repo="$out/bigrepo-$size"

cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bin monoship
bin="$root/target/release/monoship"

if [ ! -f "$repo.env" ]; then
  bash "$here/make_bigrepo.sh" "$repo" >/dev/null 2>&1
fi
# A clone holds its objects in a pack; an older generator left them loose (100k loose blobs make
# every git command slower). Pack once, as a fetch would, before timing anything.
if [ -n "$(find "$repo/.git/objects" -maxdepth 1 -name '[0-9a-f][0-9a-f]' -print -quit)" ]; then
  git -C "$repo" repack -adq
fi
# shellcheck disable=SC1090
. "$repo.env"
python3 - "$N_SERVICES" > "$repo.monoship.yml" <<'PY'
import sys
print("services:")
for s in range(int(sys.argv[1])):
    print(f"  svc-{s:03d}:\n    paths: [\"services/svc-{s:03d}/**\", \"libs/**\"]")
PY

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "repo: $(git -C "$repo" ls-files | wc -l) files, $(git -C "$repo" diff --name-only "$BASE_SHA" "$HEAD_SHA" | wc -l) changed, $N_SERVICES services; git $(git --version | cut -d' ' -f3)"

# Check the answer once before timing anything.
changed=$("$bin" plan -C "$repo" --config "$repo.monoship.yml" --base "$BASE_SHA" --head "$HEAD_SHA" --format json \
  | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["changed"]))')
[ "$changed" = "$N_TOUCHED" ] || { echo "monoship found $changed changed services, expected $N_TOUCHED" >&2; exit 1; }

python3 "$here/measure.py" "git diff --name-status" "$runs" "$repo" -- \
  git diff --name-status -z --no-renames "$BASE_SHA" "$HEAD_SHA"
python3 "$here/measure.py" "monoship plan" "$runs" "$repo" -- \
  "$bin" plan --config "$repo.monoship.yml" --base "$BASE_SHA" --head "$HEAD_SHA" --format json

if [ -n "${PATHS_FILTER_DIST:-}" ]; then
  gh_out=$(mktemp)
  # Push mode with local git, as on a runner: base = the previous commit, token empty.
  # `env` sets the hyphenated input names, which shell assignments cannot.
  env GITHUB_EVENT_NAME=push GITHUB_EVENT_PATH="$repo.event.json" GITHUB_WORKSPACE="$repo" \
  GITHUB_REF=refs/heads/feature GITHUB_SHA="$HEAD_SHA" GITHUB_OUTPUT="$gh_out" \
  INPUT_FILTERS="$repo.filters.yml" INPUT_BASE="$BASE_SHA" INPUT_TOKEN= INPUT_LIST-FILES=none \
  INPUT_INITIAL-FETCH-DEPTH=100 INPUT_PREDICATE-QUANTIFIER=some \
    python3 "$here/measure.py" "paths-filter (node $(node --version))" "$runs" "$repo" -- node "$PATHS_FILTER_DIST"
  # Every run appended its outputs; count the filters set to true, per run.
  pf_changed=$(python3 - "$gh_out" "$runs" <<'PY'
import sys
lines, runs = open(sys.argv[1]).read().split("\n"), int(sys.argv[2])
trues, i = 0, 0
while i < len(lines):
    if "<<" in lines[i]:
        name, delim = lines[i].split("<<", 1)
        j = lines.index(delim, i + 1)
        if name.startswith("svc-") and "_" not in name and "\n".join(lines[i + 1:j]) == "true":
            trues += 1
        i = j + 1
    else:
        i += 1
print(trues // runs)
PY
)
  echo "paths-filter found $pf_changed changed filters per run (expected $N_TOUCHED)"
  rm -f "$gh_out"
else
  echo "(set PATHS_FILTER_DIST=/path/to/paths-filter/dist/index.js to time paths-filter in the same run)"
fi
