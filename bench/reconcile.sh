#!/usr/bin/env bash
# Benchmark of issue 3 (git mode): `slipway run` on a large synthetic registry in a git repository
# (first pass, no-change pass), the same registry writes in MLflow's model registry (SQLite) in the
# same run, the local target's router overhead against calling the model server directly, and
# resident memory. Results: .bench/reconcile/*.txt and *.md. Nothing leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
runs=${RUNS:-5}
out=$root/.bench/reconcile
rm -rf "$out" && mkdir -p "$out"

command -v hyperfine >/dev/null || { apt-get -qq update && apt-get -qq install -y hyperfine; }
venv=$cache/bench-mlflow
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import mlflow' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'mlflow-skinny==3.17.2' sqlalchemy alembic
fi
# SKIP_BUILD=1 uses target/release as it is (e.g. a `--no-default-features` build: git mode needs
# no SageMaker client).
[ -n "${SKIP_BUILD:-}" ] || cargo build -q --release -p slipway --bin slipway --example gen_registry --example bench_router
slipway=$root/target/release/slipway
gen=$root/target/release/examples/gen_registry

# One git repository per registry variant, committed as `main`.
make_repo() { # DIR GEN-FLAGS...
  local dir=$1; shift
  "$gen" "$dir" "$@"
  git -C "$dir" init -q -b main
  git -C "$dir" add -A
  git -C "$dir" -c user.name=bench -c user.email=bench@localhost commit -qm registry
}
make_repo "$out/registry-only" --runnable --no-evaluations
make_repo "$out/with-evaluations" --runnable

# `/usr/bin/time` of one command: "wall seconds, max RSS".
timed() { # LABEL COMMAND...
  local label=$1; shift
  # (`slipway run --once` exits 3 when a move is held or a deployment stands rolled back: the
  # generated registry holds some of both; only 1 is a failure.)
  local rc=0
  /usr/bin/time -f "%e s, %M KB max RSS" -o "$out/time.tmp" "$@" > "$out/last.out" 2> "$out/last.err" || rc=$?
  if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
    echo "$label failed:"; tail -5 "$out/last.err"; exit 1
  fi
  echo "$label: $(cat "$out/time.tmp")" | tee -a "$out/reconcile.txt"
}

echo "== registry writes only: 100 models, 10,000 versions, 2,000 aliases, 50 policies" | tee -a "$out/reconcile.txt"
timed "slipway run --once, first pass (git, SQLite)" \
  "$slipway" run "file://$out/registry-only" --once --state "$out/state-registry-only"
timed "MLflow $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)') registry (SQLite), same records" \
  "$venv/bin/python" bench/mlflow_registry.py "$out/mlflow.db" "$out/registry-only"
echo "  MLflow says: $(cat "$out/last.out")" | tee -a "$out/reconcile.txt"

echo "== with evaluations: each of the 10,000 versions evaluated (a shell one-liner), reports written" | tee -a "$out/reconcile.txt"
timed "slipway run --once, first pass" \
  "$slipway" run "file://$out/with-evaluations" --once --state "$out/state-with-evaluations"
grep -c '^holdout on' "$out/last.err" | sed 's/^/  evaluations completed: /' | tee -a "$out/reconcile.txt"
timed "slipway run --once, no-change pass" \
  "$slipway" run "file://$out/with-evaluations" --once --state "$out/state-with-evaluations"

hyperfine -N -w 1 -r "$runs" --export-markdown "$out/no-change.md" \
  -n "no-change pass, registry only" "$slipway run file://$out/registry-only --once --state $out/state-registry-only" \
  -n "no-change pass, with evaluations" "$slipway run file://$out/with-evaluations --once --state $out/state-with-evaluations"

# Resident memory of a long-running instance serving the quickstart (router + 1 model server).
qs=$out/quickstart && cp -r examples/quickstart "$qs"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/port: 8765/port: $port/" "$qs/deployments.yaml"
listen=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$slipway" run "$qs" --state "$out/state-qs" --interval 2s --listen "127.0.0.1:$listen" 2>/dev/null &
pid=$!
for _ in $(seq 120); do
  curl -fs "http://127.0.0.1:$listen/api/v1/deployments" | grep -q '"Healthy"' && break; sleep 0.5
done
for _ in $(seq 500); do curl -fs "http://127.0.0.1:$port/predict?grass=0.7&lines=0.05&crowd=0.1&brightness=0.6" >/dev/null; done
sleep 10
echo "long-running slipway run (quickstart: router, 1 model server, HTTP API), after 500 requests: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status) resident" | tee -a "$out/reconcile.txt"
kill -TERM $pid; wait $pid || true

"$root/target/release/examples/bench_router" "${ROUTER_REQUESTS:-20000}" | tee "$out/router.md"
cat "$out/reconcile.txt" "$out/no-change.md"
