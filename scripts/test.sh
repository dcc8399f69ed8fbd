#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs or builds what the tests need
# (kube-apiserver + etcd, cached under ~/.cache/slipway), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBEBUILDER_ASSETS=$(scripts/kube-assets.sh)
export KUBEBUILDER_ASSETS
echo "using kube-apiserver and etcd from $KUBEBUILDER_ASSETS"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
