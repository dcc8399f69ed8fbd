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
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
