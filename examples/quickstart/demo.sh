#!/usr/bin/env bash
# The quickstart story on one machine: `slipway run` registers versions 7 and 8, evaluates both
# on the hold-out frames (8 against production = 7), writes comparison reports, promotes
# production to 7; then the alias moves to 8 (as a merged pull request would) and the next run
# re-checks the data rules and promotes 8. Works in a temporary copy; nothing here is changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# Only what the quickstart needs: a debug build without the SageMaker target (the AWS SDK), with
# cargo's progress on stderr. About 3 minutes on 2 cores the first time, seconds afterwards.
echo "building slipway (debug, without the SageMaker target)…" >&2
# SLIPWAY=/path/to/slipway uses that binary instead of building one.
slipway=${SLIPWAY:-}
if [ -z "$slipway" ]; then
  cargo build --manifest-path "$root/Cargo.toml" -p slipway --bin slipway --no-default-features
  slipway="$root/target/debug/slipway"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here" "$work/registry"
rm -f "$work/registry/demo.sh"

echo '$ slipway run registry --once --state state'
(cd "$work" && "$slipway" run registry --once --state state 2>&1)
echo
echo '# production: "7" → "8" in registry/aliases.yaml'
sed -i 's/  version: "7"/  version: "8"/' "$work/registry/aliases.yaml"
# A canary step passes only on requests the candidate answered (20 per step unless the
# deployment says otherwise): users send them, as they would in production.
echo '# meanwhile, a prediction every 10 ms through the router on 127.0.0.1:8765'
python3 - <<'PY' &
import time, urllib.request
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:8765/predict?grass=0.7&lines=0.05&crowd=0.1&brightness=0.6", timeout=2).read()
    except OSError:
        pass
    time.sleep(0.01)
PY
traffic=$!
trap 'kill "$traffic" 2>/dev/null || true; rm -rf "$work"' EXIT
echo '$ slipway run registry --once --state state'
(cd "$work" && "$slipway" run registry --once --state state 2>&1)
kill "$traffic" 2>/dev/null || true
echo
echo '$ slipway status --state state'
(cd "$work" && "$slipway" status --state state)
echo
echo '$ head -12 state/reports/default/pitch-frames-8-holdout.md'
head -12 "$work/state/reports/default/pitch-frames-8-holdout.md"
