# The action's release image: a static monoship, git, CA certificates, and the docker CLI with
# the buildx plugin. monoship builds through the runner's Docker daemon (its Engine API and
# BuildKit) by itself; the CLI and buildx serve only services with several platforms or the
# registry cache (`docker buildx build --push`). .github/workflows/release.yml builds it natively on amd64 and arm64 runners and pins
# the result by digest in action.yml; a checkout whose action.yml still says `image:
# Dockerfile` (a branch, `uses: ./`) makes the runner build this file on every run.
#
# It cannot be built where the daemon cannot pull; scripts/local-action-image.sh assembles an
# image with the same contents from the host for that (and for the container tests).
#
# Base images are pinned by version tag, not digest: bump them together with the release.

# A static binary, so the runtime image needs no glibc and no Rust runtime. The build runs on
# the target architecture (native runners), hence the target triple from `uname -m`.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
# aws-lc (the TLS crypto) is C: compile it with musl-gcc like the rest of the binary.
RUN target="$(uname -m)-unknown-linux-musl" \
 && export "CC_$(echo "$target" | tr - _)=musl-gcc" \
 && cargo build --release --locked --target "$target" --bin monoship \
 && install -D "target/$target/release/monoship" /out/monoship \
 && /out/monoship --version

# The official docker:cli image carries the static docker CLI and the buildx plugin, each
# downloaded there from docker.com / GitHub releases and checked against a SHA-256.
FROM docker:29.7.2-cli AS docker-cli

FROM alpine:3.24
RUN apk add --no-cache git ca-certificates
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=docker-cli /usr/local/libexec/docker/cli-plugins/docker-buildx /usr/local/libexec/docker/cli-plugins/docker-buildx
COPY --from=build /out/monoship /usr/local/bin/monoship
# The runner runs the container as root on a workspace owned by its own user: monoship passes
# `-c safe.directory=<repo>` to every git call instead of writing git config.
ENTRYPOINT ["/usr/local/bin/monoship"]
