#!/usr/bin/env bash
# Makes a release commit and its tag, in that order, so the tag can only ever name a commit
# whose action.yml pins the image by digest:
#
#   scripts/release-commit.sh vX.Y.Z REGISTRY/NAME@sha256:<64 hex> [SOURCE_COMMIT]
#
# The release commit has the tree of SOURCE_COMMIT (default HEAD) with one line changed,
# action.yml's `image: Dockerfile` → `image: docker://REGISTRY/NAME@sha256:…`. It is made on
# the `releases` branch (created on the first release), with two parents: the branch's previous
# head and SOURCE_COMMIT, so the branch keeps every release and `git log` shows what each one
# was cut from. Only then is the annotated tag vX.Y.Z created on it (and, for a final release,
# the major tag vX moved to it). Nothing is pushed: the release workflow pushes the branch
# first and the tags after, with `git push --atomic`.
#
# Exit 2, with nothing changed, when the version or the image reference is malformed, the tag
# exists already, or SOURCE_COMMIT's action.yml has no `image: Dockerfile` line to pin.
set -euo pipefail
say() { echo "release-commit: $*" >&2; }
refuse() { say "$*"; exit 2; }

[ $# -ge 2 ] && [ $# -le 3 ] || refuse "usage: $0 vX.Y.Z REGISTRY/NAME@sha256:<digest> [SOURCE_COMMIT]"
tag=$1
image=$2
source=$(git rev-parse --verify --quiet "${3:-HEAD}^{commit}") ||
  refuse "${3:-HEAD} is not a commit of this repository"
branch=releases

[[ "$tag" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] ||
  refuse "release tags look like v1.2.3 or v1.2.3-rc.1, not '$tag'"
[[ "$image" =~ ^[a-z0-9.:-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$ ]] ||
  refuse "the image must be named by digest (ghcr.io/owner/monoship@sha256:<64 hex>), not '$image'"
if git rev-parse --verify --quiet "refs/tags/$tag" >/dev/null; then
  refuse "tag $tag exists already; a release tag is never moved"
fi

# The pinned action.yml, from SOURCE_COMMIT's: exactly one line may change.
original=$(git show "$source:action.yml") || refuse "$source has no action.yml"
[ "$(grep -c '^  image: Dockerfile$' <<<"$original")" = 1 ] ||
  refuse "action.yml at $source has no single '  image: Dockerfile' line to pin (already a release commit?)"
pinned=$(sed "s|^  image: Dockerfile\$|  image: docker://$image|" <<<"$original")

# The release tree: SOURCE_COMMIT's tree with the new action.yml blob, built in a private
# index so the work tree and the real index stay as they are.
index=$(mktemp)
trap 'rm -f "$index"' EXIT
export GIT_INDEX_FILE=$index
git read-tree "$source"
blob=$(printf '%s\n' "$pinned" | git hash-object -w --stdin)
git update-index --cacheinfo "100644,$blob,action.yml"
tree=$(git write-tree)
unset GIT_INDEX_FILE

parents=(-p "$source")
if previous=$(git rev-parse --verify --quiet "refs/heads/$branch"); then
  parents=(-p "$previous" -p "$source")
fi
commit=$(printf 'release %s: pin the action image\n\ndocker://%s\ncut from %s\n' \
  "$tag" "$image" "$source" | git commit-tree "$tree" "${parents[@]}")

# The check the tag depends on, made on the commit itself rather than on what was meant.
git show "$commit:action.yml" | grep -qx "  image: docker://$image" ||
  refuse "internal error: the release commit does not pin $image"
git update-ref "refs/heads/$branch" "$commit" ${previous:+"$previous"}
git tag -a -m "monoship $tag" "$tag" "$commit"
if [[ "$tag" != *-* ]]; then
  git tag -f -a -m "monoship ${tag%%.*} (latest: $tag)" "${tag%%.*}" "$commit" >/dev/null
fi
say "tagged $tag at $commit on $branch (cut from $source)"
echo "$commit"
