#!/usr/bin/env bash
# Benchmark of issue 12 (shipping). Results in .bench/ship/. Nothing leaves 127.0.0.1 except
# Debian's and crates' registries through their clients.
#
# - builds: a clean release build of `slipway` under the release profile of Cargo.toml against
#   the profile before issue 12 (line tables, no LTO, 16 codegen units), each in an empty target
#   folder, one after the other: wall time and binary size. FEATURES (default
#   `--no-default-features`) picks the features of both. SHIP_BUILDS=0 skips them (~20 minutes).
# - image: scripts/image.sh with target/release/slipway (built first when missing); the image's
#   size, and cold `slipway validate examples/football-frames` in the image (`buildah run`)
#   against the same binary on the host, page cache dropped before every run (hyperfine).
# - quickstart: a fresh clone with an empty target/, `examples/quickstart/demo.sh` run as a new
#   user would: seconds to the first progress line, to slipway's first output, and to the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.bench/ship
rm -rf "$out" && mkdir -p "$out"
runs=${RUNS:-5}
command -v hyperfine >/dev/null || { apt-get -qq update && apt-get -qq install -y hyperfine; }
seconds() { python3 -c 'import time; print(f"{time.monotonic():.3f}")'; }

if [[ ${SHIP_BUILDS:-1} != 0 ]]; then
  read -r -a features <<< "${FEATURES---no-default-features}"   # FEATURES="" for the default ones
  echo "| Release profile | Build (s) | Binary (bytes) |" > "$out/builds.md"
  echo "|:---|---:|---:|" >> "$out/builds.md"
  build() { # NAME CARGO-ARGS...
    local name=$1; shift
    local dir=$out/target-$name start
    start=$(seconds)
    cargo build --release --locked -p slipway --bin slipway --target-dir "$dir" "${features[@]}" "$@" \
      2> "$out/build-$name.log"
    echo "| $name | $(python3 -c "print(round($(seconds) - $start))") | $(stat -c %s "$dir/release/slipway") |" \
      >> "$out/builds.md"
    rm -rf "$dir"
  }
  build before --config 'profile.release.debug="line-tables-only"' --config 'profile.release.strip="none"' \
    --config 'profile.release.lto=false' --config 'profile.release.codegen-units=16'
  build after
fi

[[ -x target/release/slipway ]] || cargo build -q --release --locked -p slipway --bin slipway
stat -c '%s target/release/slipway' target/release/slipway > "$out/binary.txt"
export SLIPWAY_IMAGE_STORE=${SLIPWAY_CACHE:-$HOME/.cache/slipway}/containers
scripts/image.sh target/release/slipway 2> "$out/image.txt"
bah() { buildah --storage-driver vfs --root "$SLIPWAY_IMAGE_STORE/storage" --runroot "$SLIPWAY_IMAGE_STORE/run" "$@"; }
bah images --format '{{.Name}}:{{.Tag}} {{.Size}}' >> "$out/image.txt"
c=$(bah from --pull=never localhost/slipway:dev)
clone=$(mktemp -d)
demo=""
cleanup() {
  bah rm "$c" >/dev/null || true
  if [[ -n $demo ]]; then kill "$demo" 2>/dev/null || true; fi
  rm -rf "$clone"
}
trap cleanup EXIT
in_image="buildah --storage-driver vfs --root '$SLIPWAY_IMAGE_STORE/storage' --runroot '$SLIPWAY_IMAGE_STORE/run' run --isolation chroot"
hyperfine -N -w 1 -r "$runs" --export-markdown "$out/validate.md" \
  --prepare 'sh -c "sync; echo 3 > /proc/sys/vm/drop_caches"' \
  -n 'host: slipway validate' "target/release/slipway validate examples/football-frames" \
  -n 'image: buildah run … slipway validate' \
  "$in_image -v '$root/examples:/examples:ro' $c -- slipway validate /examples/football-frames" \
  -n 'image: buildah run … true' "$in_image $c -- true"

git clone -q "$root" "$clone/slipway"
start=$(seconds)
(cd "$clone/slipway" && examples/quickstart/demo.sh > "$out/demo.out" 2> "$out/demo.err") &
demo=$!
progress="" first=""
while kill -0 $demo 2>/dev/null; do
  now=$(seconds)
  # demo.sh's own announcement, then cargo's first line.
  [[ -z $progress && $(wc -l < "$out/demo.err") -ge 2 ]] && progress=$(python3 -c "print(round($now - $start, 1))")
  # The first line after the echoed `$ slipway run` is slipway's own.
  [[ -z $first && $(wc -l < "$out/demo.out") -ge 2 ]] && first=$(python3 -c "print(round($now - $start, 1))")
  sleep 0.2
done
wait $demo
demo=""
total=$(python3 -c "print(round($(seconds) - $start, 1))")
printf 'first line of cargo progress: %s s\nfirst slipway output: %s s\nwhole demo: %s s\n' "$progress" "$first" "$total" \
  > "$out/quickstart.txt"
cat "$out"/*.md "$out/binary.txt" "$out/image.txt" "$out/quickstart.txt"
