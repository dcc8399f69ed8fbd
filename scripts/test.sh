#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs or builds what the tests need
# (kube-apiserver + etcd, cached under ~/.cache/slipway), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium for the web UI tests (Debian's package).
if ! command -v chromium >/dev/null; then
  echo "installing chromium"
  apt-get -qq update >/dev/null && apt-get -qq install -y chromium >/dev/null
fi
# Debian's buildah and mmdebstrap build and run the container image (tests/container_image.rs).
if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
  echo "installing buildah and mmdebstrap"
  apt-get -qq update >/dev/null && apt-get -qq install -y buildah mmdebstrap >/dev/null
fi
# Debian's prometheus: the server rollout metrics are queried from (tests/cli_run_metrics.rs,
# tests/k8s_metrics.rs). Its package's service is not started (the tests start their own).
if ! command -v prometheus >/dev/null; then
  echo "installing prometheus"
  apt-get -qq update >/dev/null && apt-get -qq install -y --no-install-recommends prometheus >/dev/null
fi
# Debian's libfaketime: the unit tests run again with the clock a year ahead (below).
if ! command -v faketime >/dev/null; then
  echo "installing faketime"
  apt-get -qq update >/dev/null && apt-get -qq install -y faketime >/dev/null
fi
KUBEBUILDER_ASSETS=$(scripts/kube-assets.sh)
export KUBEBUILDER_ASSETS
echo "using kube-apiserver and etcd from $KUBEBUILDER_ASSETS"
# A Helm engine (PyPI helm-python-sdk) to render and lint the chart.
SLIPWAY_HELM_PYTHON=$(scripts/helm-python.sh)
export SLIPWAY_HELM_PYTHON
# The SageMaker wire protocol: PyPI moto, extended by tests/support/moto_sagemaker.py.
SLIPWAY_MOTO_PYTHON=$(scripts/moto-python.sh)
export SLIPWAY_MOTO_PYTHON
if cargo nextest --version >/dev/null 2>&1; then
  run=(cargo nextest run)
else
  run=(cargo test)
fi
status=0
"${run[@]}" --workspace --all-targets --no-fail-fast "$@" || status=$?
# Every unit test that involves time uses a fixed clock: they pass with the calendar a year ahead.
# libfaketime moves the wall clock of the test binaries only (cargo's target runner; cargo itself
# and the monotonic clock stay real, or timed waits hang). The integration suites talk to peers
# with clocks of their own, which libfaketime cannot move.
echo "unit tests with the clock a year ahead"
host=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')
env FAKETIME_DONT_FAKE_MONOTONIC=1 "CARGO_TARGET_${host}_RUNNER=faketime -f +365d" \
  "${run[@]}" --workspace --lib --no-fail-fast || status=$?
exit "$status"
