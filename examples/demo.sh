#!/usr/bin/env bash
# Runs monoship on the bundled example shop (examples/shop): copies it into a throwaway git
# repository, commits it, changes the shared protos in a second commit, and plans that change.
# Extra arguments go to `monoship plan` (e.g. `--format json`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cargo build --quiet --manifest-path "$here/../Cargo.toml" --bin monoship
bin="$here/../target/debug/monoship"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/shop/." "$work/"
git() { command git -C "$work" -c user.name=demo -c user.email=demo@example.invalid -c commit.gpgsign=false "$@"; }
git init -q -b main
git add -A
git commit -q -m "the shop"
echo 'message Money { int64 units = 1; }' >> "$work/pb/demo.proto"
git commit -q -am "protos: add Money"
"$bin" plan -C "$work" --base HEAD~1 "$@"
