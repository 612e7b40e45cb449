#!/usr/bin/env bash
# Writes the synthetic monorepo the benchmarks and tests/it/bigrepo.rs plan against.
#
#   bench/make_bigrepo.sh [DIR]        (default ./bigrepo; N_SERVICES=200 N_TOUCHED=50)
#
# Two commits, always the same content:
#   main     "base": services/svc-NNN/src/mod-M/file-F.rs for N_SERVICES services, 10 modules
#            of 10 files each, plus libs/shared/mod-0..4/file-0..9.rs (never changed):
#            20,050 files by default.
#   feature  "change" on top: in each of the first N_TOUCHED services, mod-0..7 edited (80),
#            mod-9 deleted (10) and mod-0/new-0..9.rs added (10): 5,000 paths by default.
# Beside DIR: DIR.env (BASE_SHA, HEAD_SHA), DIR.event.json (a push payload from base to
# change), DIR.filters.yml and DIR.files.yml (per service: its folder and libs/**, in the
# filter shape dorny/paths-filter and tj-actions/changed-files read).
# The commits go in through `git fast-import`, so the objects are packed as in a clone.
set -euo pipefail
target=${1:-./bigrepo}
mkdir -p "$(dirname "$target")"
target="$(cd "$(dirname "$target")" && pwd)/$(basename "$target")"
services=${N_SERVICES:-200}
touched=${N_TOUCHED:-50}
rm -rf "$target" "$target.env" "$target.event.json" "$target.filters.yml" "$target.files.yml"
git init -q -b main "$target"

# One fast-import stream: the base tree on main, then the change on feature.
python3 - "$services" "$touched" <<'PY' | git -C "$target" fast-import --quiet
import sys

services, touched = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer

def commit(branch, parent, message, when, changes):
    who = b"bench <bench@example.invalid> %d +0000" % when
    out.write(b"commit refs/heads/%s\n" % branch.encode())
    out.write(b"author " + who + b"\ncommitter " + who + b"\n")
    out.write(b"data %d\n%s\n" % (len(message), message.encode()))
    if parent:
        out.write(b"from %s\n" % parent.encode())
    for path, body in changes:
        if body is None:
            out.write(b"D %s\n" % path.encode())
        else:
            data = body.encode()
            out.write(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))

def module_file(s, m, f):
    return f"services/svc-{s:03d}/src/mod-{m}/file-{f}.rs"

def original(s, m, f):
    return f"// svc {s}, module {m}, file {f}\npub fn value() -> u32 {{ {s * 100 + m * 10 + f} }}\n"

base = [(module_file(s, m, f), original(s, m, f))
        for s in range(services) for m in range(10) for f in range(10)]
base += [(f"libs/shared/mod-{m}/file-{f}.rs", f"// shared library {m}.{f}\n")
         for m in range(5) for f in range(10)]
commit("main", None, "base", 1704067200, base)  # 2024-01-01T00:00:00Z

change = []
for s in range(touched):
    for m in range(10):
        for f in range(10):
            if m < 8:
                change.append((module_file(s, m, f), original(s, m, f) + "// edited\n"))
            elif m == 9:
                change.append((module_file(s, m, f), None))
    change += [(f"services/svc-{s:03d}/src/mod-0/new-{f}.rs", f"// added to svc {s}: {f}\n")
               for f in range(10)]
commit("feature", "refs/heads/main", "change", 1704153600, change)  # a day later
PY

git -C "$target" checkout -q feature
base_sha=$(git -C "$target" rev-parse main)
head_sha=$(git -C "$target" rev-parse feature)

for ((s = 0; s < services; s++)); do
  printf -v name 'svc-%03d' "$s"
  printf "%s:\n  - 'services/%s/**'\n  - 'libs/**'\n" "$name" "$name"
done > "$target.filters.yml"
cp "$target.filters.yml" "$target.files.yml"
cat > "$target.event.json" <<JSON
{"ref": "refs/heads/feature", "before": "$base_sha", "after": "$head_sha", "forced": false,
 "repository": {"name": "bigrepo", "full_name": "example/bigrepo", "default_branch": "main",
                "owner": {"login": "example", "name": "example"}}}
JSON
printf 'BASE_SHA=%s\nHEAD_SHA=%s\n' "$base_sha" "$head_sha" > "$target.env"
echo "base=$base_sha head=$head_sha files=$(git -C "$target" ls-files | wc -l)" \
  "changed=$(git -C "$target" diff --name-only "$base_sha" "$head_sha" | wc -l)"
