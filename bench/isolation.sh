#!/usr/bin/env bash
# Benchmark of issue 10 ("nothing waits on an evaluation"): the quickstart's production canary
# (7 → 8, two 2-second steps) timed from the alias move to `RolloutSucceeded`, once alone and once
# with a second model registered in the same revision whose evaluation takes 40 seconds.
# `slipway run` polls every second; RUNS repetitions of each. Results: .bench/isolation/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${RUNS:-3}
out=$root/.bench/isolation
rm -rf "$out" && mkdir -p "$out"
cargo build -q -p slipway --bin slipway
slipway=$root/target/debug/slipway

slow_model() { # the 40-second suite, and a version for it
  cat <<'YAML'
apiVersion: slipway.dev/v1alpha1
kind: RegisteredModel
metadata: {name: slow-model}
spec:
  owners: ["group:ml-leads"]
  evaluations:
    - name: holdout
      runner:
        local:
          command: ["sh", "-c", "sleep 40; echo '{\"metrics\": {\"f1\": 0.9}}' > \"$SLIPWAY_RESULTS\""]
      dataset: {uri: "file://data/holdout.csv"}
      gates:
        - {metric: f1, op: ">=", value: 0.5}
      timeout: 10m
---
apiVersion: slipway.dev/v1alpha1
kind: ModelVersion
metadata: {name: slow-model-1}
spec: {model: slow-model, version: "1", artifact: {uri: "file://models/slow-1", digest: "sha256:5151515151515151515151515151515151515151515151515151515151515151"}}
YAML
}

successes() { "$slipway" history pitch-frames --state "$1/state" 2>/dev/null | grep -c RolloutSucceeded || true; }

one() { # VARIANT RUN → seconds from the alias move to RolloutSucceeded
  local variant=$1 work
  work=$(mktemp -d)
  cp -r examples/quickstart "$work/registry"
  rm -f "$work/registry/demo.sh"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  sed -i "s/port: 8765/port: $port/" "$work/registry/deployments.yaml"
  (cd "$work" && exec "$slipway" run registry --state state --interval 1s >"$work/run.log" 2>&1) &
  local pid=$!
  until [[ $(successes "$work") -ge 1 ]]; do sleep 0.2; done
  [[ $variant == with-slow-evaluation ]] && slow_model > "$work/registry/slow.yaml"
  sed -i 's/  version: "7"/  version: "8"/' "$work/registry/aliases.yaml"
  local t0 t1
  t0=$(date +%s.%N)
  until [[ $(successes "$work") -ge 2 ]]; do sleep 0.1; done
  t1=$(date +%s.%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$work"
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

for variant in alone with-slow-evaluation; do
  for i in $(seq "$runs"); do one "$variant" >> "$out/$variant.txt"; done
done
python3 - "$out" <<'PY'
import statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = []
for v in ["alone", "with-slow-evaluation"]:
    xs = [float(x) for x in (out / f"{v}.txt").read_text().split()]
    rows.append(f"| {v} | {len(xs)} | {statistics.median(xs):.2f} s | {min(xs):.2f} s | {max(xs):.2f} s |")
table = "| canary 7 → 8 | runs | median | min | max |\n|---|---|---|---|---|\n" + "\n".join(rows)
(out / "isolation.md").write_text(table + "\n")
print(table)
PY
