#!/usr/bin/env bash
# Builds the Slipway image from ./Containerfile with Debian's buildah: no daemon, vfs storage,
# chroot isolation, so it works as root on a plain machine or inside a CI job.
#
#   scripts/image.sh [BINARY]
#
# BINARY is the `slipway` to put in the image; without it, a release build is made first
# (`cargo build --release --locked`). Its debug sections are stripped on the way in.
#
# The image is tagged `slipway:dev` and with the chart's default image, `REPOSITORY:APPVERSION`
# from charts/slipway (values.yaml `image.repository`, Chart.yaml `appVersion`).
#
# `FROM debian:bookworm-slim` is never pulled. When buildah's storage lacks it, it is assembled
# once from Debian's packages with mmdebstrap (minbase, documentation left out), using this
# machine's own apt mirror. SLIPWAY_IMAGE_STORE=DIR keeps buildah's storage under DIR instead of
# the system's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "image: $*" >&2; }

store=()
if [[ -n ${SLIPWAY_IMAGE_STORE:-} ]]; then
  store=(--root "$SLIPWAY_IMAGE_STORE/storage" --runroot "$SLIPWAY_IMAGE_STORE/run")
fi
bah() { buildah --storage-driver vfs "${store[@]}" "$@"; }
command -v buildah >/dev/null || { log "buildah is missing: apt-get install -y buildah mmdebstrap"; exit 1; }
work=$(mktemp -d)
container=""
cleanup() { if [[ -n $container ]]; then bah rm "$container" >/dev/null 2>&1 || true; fi; rm -rf "$work"; }
trap cleanup EXIT

binary=${1:-}
if [[ -z $binary ]]; then
  log "building the release binary"
  (cd "$root" && cargo build --release --locked --bin slipway >&2)
  binary=$root/target/release/slipway
fi
[[ -x $binary ]] || { log "$binary is not an executable file"; exit 1; }

base=docker.io/library/debian:bookworm-slim
if ! bah inspect --type image "$base" >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: apt-get install -y mmdebstrap"; exit 1; }
  mirror=$("$root/scripts/debian-mirror.sh")
  security=$("$root/scripts/debian-mirror.sh" security)
  log "assembling $base from Debian packages (once)"
  # merged-usr as debian:bookworm-slim has it, without usrmerge and the perl it pulls in.
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --aptopt='APT::Install-Recommends "false"' \
    bookworm "$work/base.tar" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main" >&2
  container=$(bah from scratch)
  bah add "$container" "$work/base.tar" / >/dev/null
  bah config --cmd bash --label "dev.slipway.assembled=$(date -u +%Y-%m-%d) by scripts/image.sh" "$container"
  bah commit --quiet "$container" "$base" >/dev/null
  bah rm "$container" >/dev/null
  container=""
fi

repository=$(sed -n 's/^  repository: *//p' "$root/charts/slipway/values.yaml" | sed -n 1p)
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/slipway/Chart.yaml")
[[ -n $repository && -n $app_version ]] || { log "no image.repository or appVersion in charts/slipway"; exit 1; }

context=$work/context
mkdir "$context"
objcopy --strip-debug "$binary" "$context/slipway" 2>/dev/null || cp "$binary" "$context/slipway"
chmod 0755 "$context/slipway"
previous=$(bah images --quiet --no-trunc localhost/slipway:dev 2>/dev/null | sed -n 1p || true)
log "building slipway:dev and $repository:$app_version"
bah bud --quiet --pull=never --isolation chroot --layers=false \
  --build-arg SLIPWAY_BINARY=slipway -f "$root/Containerfile" \
  -t slipway:dev -t "$repository:$app_version" "$context" >/dev/null
# The image these tags named before is left untagged; remove it unless a container uses it.
if [[ -n $previous && $previous != "$(bah images --quiet --no-trunc localhost/slipway:dev | sed -n 1p)" ]]; then
  bah rmi "$previous" >/dev/null 2>&1 || true
fi
# The binary must run on bookworm's C library: a binary linked against a newer glibc fails here.
container=$(bah from --pull=never localhost/slipway:dev)
if ! version=$(bah run --isolation chroot "$container" -- slipway --version 2>&1); then
  log "the image's slipway does not run: $version"
  log "build the binary on Debian bookworm (glibc 2.36) or older"
  exit 1
fi
size=$(bah images --format '{{.Size}}' localhost/slipway:dev | sed -n 1p)
log "built slipway:dev and $repository:$app_version ($size): $version"
