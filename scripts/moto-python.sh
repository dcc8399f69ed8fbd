#!/usr/bin/env bash
# Prints the path of a Python interpreter with PyPI's moto server (SageMaker and CloudWatch) and
# boto3, installing them into ~/.cache/slipway/moto-venv on first use. The SageMaker tests start
# tests/support/moto_sagemaker.py with it (moto plus an UpdateEndpoint implementation).
set -euo pipefail
venv=${SLIPWAY_CACHE:-$HOME/.cache/slipway}/moto-venv
if ! "$venv/bin/python" -c 'import moto.sagemaker, moto.cloudwatch, flask, boto3, cbor2' 2>/dev/null; then
  echo "installing moto into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'moto[sagemaker,cloudwatch]==5.2.5' flask flask-cors 'cbor2==6.3.0' >&2
fi
echo "$venv/bin/python"
