#!/usr/bin/env bash
# Benchmark of issue 10: admission latency against namespace size — `kubectl apply` of 200 new
# ModelVersions into namespaces holding 100 / 1,000 / 10,000 objects, through Slipway's webhook
# and without it, on a real kube-apiserver + etcd (loopback), in one run.
# Results: .bench/admission/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.bench/admission
rm -rf "$out" && mkdir -p "$out"
cargo build -q --release -p slipway --no-default-features --bin slipway --example bench_admission --example bench_controller
source bench/apiserver.sh
"$root/target/release/examples/bench_admission" "$root/target/release/slipway" | tee "$out/results.txt"
