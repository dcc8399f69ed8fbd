#!/usr/bin/env bash
# Benchmark of issue 4 (DESIGN §9): `slipway controller` converging 2,000 ModelVersions, 500
# aliases and 200 deployments on a real kube-apiserver + etcd (loopback), against the API server
# alone doing the same writes, in one run; resident memory; promotion latency p50/p99.
# SCALE=10 runs it at ten times the size (20,000 versions, 5,000 aliases, 2,000 deployments).
# Results: .bench/controller/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.bench/controller
rm -rf "$out" && mkdir -p "$out"
[ -n "${SKIP_BUILD:-}" ] || cargo build -q --release -p slipway --no-default-features --bin slipway --example bench_controller --example bench_admission

source bench/apiserver.sh
"$root/target/release/examples/bench_controller" "$root/target/release/slipway" | tee "$out/results.txt"
