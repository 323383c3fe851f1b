#!/usr/bin/env bash
# Build modelshelf's images and print their sizes: `make images` runs this.
#   images/build.sh [NAME ...]      NAME: base storage-initializer mlflowserver-conda or a server
#                                   of shared/modelshelf/registry.py (default: all that apply);
#                                   every server is images/server.Dockerfile with its build args
# Environment: IMAGE_BUILDER=docker|podman|buildah (default: docker if its engine answers, else
# podman, else buildah), IMAGE_PREFIX (localhost/modelshelf), IMAGE_TAG (dev), BASE_IMAGE
# (python:3.11-slim). Without a registry, ../shared/images/local-base-image.sh (when present and
# BASE_IMAGE is unset) builds a local python:3.11-slim and the builds never pull.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCAL_BASE_SCRIPT=${LOCAL_BASE_SCRIPT:-../shared/images/local-base-image.sh}
PULL=()
if [ -z "${BASE_IMAGE:-}" ] && [ -x "$LOCAL_BASE_SCRIPT" ]; then
  eval "$("$LOCAL_BASE_SCRIPT")"
  PULL=(--pull=never)
fi
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
PREFIX=${IMAGE_PREFIX:-localhost/modelshelf}
TAG=${IMAGE_TAG:-dev}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)

builder=${IMAGE_BUILDER:-}
if [ -z "$builder" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then builder=docker
  elif command -v podman >/dev/null 2>&1; then builder=podman
  elif command -v buildah >/dev/null 2>&1; then builder=buildah
  else echo "images/build.sh: no docker engine, podman or buildah found" >&2; exit 1
  fi
fi
case $builder in
  docker)  build=(docker build); inspect=(docker image inspect --format '{{.Size}}') ;;
  podman)  build=(podman build --layers --isolation chroot); inspect=(podman image inspect --format '{{.Size}}') ;;
  buildah) build=(buildah bud --layers --isolation chroot); inspect=(buildah inspect --type image --format '{{.ImageSize}}') ;;
  *) echo "images/build.sh: IMAGE_BUILDER=$builder: expected docker, podman or buildah" >&2; exit 1 ;;
esac
build+=("${PULL[@]}" --build-arg "VERSION=$VERSION")

REGISTRY=(python3 shared/modelshelf/registry.py)
all=(base storage-initializer)
for name in $("${REGISTRY[@]}" images); do
  [ -d "servers/$name" ] && all+=("$name")
done
# The conda variant copies micromamba from an image no registry here can serve: opt in.
[ -n "${MICROMAMBA_IMAGE:-}" ] && all+=(mlflowserver-conda)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=("${all[@]}")

image() { echo "$PREFIX/$1:$TAG"; }
run() { echo "+ $*" >&2; "$@"; }
built=()
build_deps_and_base() {
  run "${build[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" --target deps -t "$(image deps)" -f images/base.Dockerfile .
  run "${build[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" --target base -t "$(image base)" -f images/base.Dockerfile .
  built+=(deps base)
}
build_deps_and_base
for name in "${wanted[@]}"; do
  case $name in
    base|deps) ;;
    storage-initializer)
      run "${build[@]}" --build-arg "MODELSHELF_BASE=$(image base)" -t "$(image "$name")" -f "images/$name.Dockerfile" .
      built+=("$name") ;;
    mlflowserver-conda)
      run "${build[@]}" --build-arg "MLFLOWSERVER_IMAGE=$(image mlflowserver)" --build-arg "MICROMAMBA_IMAGE=$MICROMAMBA_IMAGE" \
          -t "$(image "$name")" -f "images/$name.Dockerfile" .
      built+=("$name") ;;
    *)
      server_args=()
      while IFS= read -r arg; do server_args+=(--build-arg "$arg"); done < <("${REGISTRY[@]}" build-args "$name")
      run "${build[@]}" --build-arg "DEPS_IMAGE=$(image deps)" "${server_args[@]}" -t "$(image "$name")" \
          -f images/server.Dockerfile .
      built+=("$name") ;;
  esac
done

mb() { echo $(( ($1 + 500000) / 1000000 )); }
deps_size=$("${inspect[@]}" "$(image deps)")
printf '\n%-48s %9s %17s\n' image "size MB" "above deps MB"
for name in "${built[@]}"; do
  size=$("${inspect[@]}" "$(image "$name")")
  printf '%-48s %9s %17s\n' "$(image "$name")" "$(mb "$size")" "$(mb $((size - deps_size)))"
done
