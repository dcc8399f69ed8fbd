#!/usr/bin/env bash
# Prints the path of a Python interpreter with PyPI's helm-python-sdk (Helm v4 as a library, no
# helm binary), installing it into ~/.cache/slipway/helm-venv on first use.
set -euo pipefail
venv=${SLIPWAY_CACHE:-$HOME/.cache/slipway}/helm-venv
if ! "$venv/bin/python" -c 'import helm_python' 2>/dev/null; then
  echo "installing helm-python-sdk into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'helm-python-sdk==0.2.2' >&2
fi
echo "$venv/bin/python"
