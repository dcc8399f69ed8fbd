#!/usr/bin/env bash
# Benchmark of DESIGN §9: `slipway validate` and `slipway plan` over a synthetic registry
# (10,000 versions, 2,000 aliases, 500 deployments, 50 policies, 100 models), against
# check-jsonschema (PyPI) validating the same files with `slipway schema` output, in one run.
# BEFORE=/path/to/an/older/slipway adds that build's validate and plan to the same run (before and
# after a change). SKIP_BUILD=1 uses target/release as it is. Results: .bench/results.md
# (hyperfine) and .bench/memory.txt. Nothing leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${SLIPWAY_CACHE:-$HOME/.cache/slipway}
runs=${RUNS:-10}

command -v hyperfine >/dev/null || { apt-get -qq update && apt-get -qq install -y hyperfine; }
venv=$cache/bench-venv
if [[ ! -x $venv/bin/check-jsonschema ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'check-jsonschema==0.39.0'
fi
# validate and plan touch no AWS API: the SDK is left out of the build.
[ -n "${SKIP_BUILD:-}" ] || cargo build -q --release --no-default-features -p slipway --bin slipway --example gen_registry --example bench_policy
slipway=$root/target/release/slipway
gen=$root/target/release/examples/gen_registry

work=$root/.bench
rm -rf "$work"
mkdir -p "$work/repo/registry" "$work/schemas"
"$gen" "$work/repo/registry"
git -C "$work/repo" init -q -b main
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=bench -c user.email=bench@localhost commit -qm base
git -C "$work/repo" checkout -q -b pr
"$gen" "$work/repo/registry" --promote 100
git -C "$work/repo" -c user.name=bench -c user.email=bench@localhost commit -qam "promote 100 models"

reg=$work/repo/registry
for k in RegisteredModel ModelVersion ModelAlias ModelDeployment PromotionPolicy Group; do
  "$slipway" schema "$k" > "$work/schemas/$k.json"
done
cat > "$work/check-jsonschema.sh" <<SH
#!/usr/bin/env bash
set -e
cj=$venv/bin/check-jsonschema
s=$work/schemas
\$cj -q --schemafile \$s/RegisteredModel.json $reg/models/*.yaml
\$cj -q --schemafile \$s/ModelVersion.json $reg/versions/*.yaml
\$cj -q --schemafile \$s/ModelAlias.json $reg/aliases/*.yaml
\$cj -q --schemafile \$s/ModelDeployment.json $reg/deployments/*.yaml
\$cj -q --schemafile \$s/PromotionPolicy.json $reg/policies/*.yaml
\$cj -q --schemafile \$s/Group.json $reg/groups/*.yaml
SH
chmod +x "$work/check-jsonschema.sh"

echo "files: $(find "$reg" -name '*.yaml' | wc -l)"
"$slipway" validate "$reg"
set +e
"$slipway" plan --repo "$work/repo" --base main --head pr --path registry --format text | tail -1
set -e
"$work/check-jsonschema.sh" && echo "check-jsonschema: all files valid"

before=()
if [[ -n ${BEFORE:-} ]]; then
  before=(-n "before: slipway validate" "$BEFORE validate $reg"
    -n "before: slipway plan (2 revisions, 100 promotions)" "$BEFORE plan --repo $work/repo --base main --head pr --path registry --format json")
fi
hyperfine -N -w 1 -r "$runs" --export-markdown "$work/results.md" -i \
  -n "slipway validate" "$slipway validate $reg" \
  -n "slipway plan (2 revisions, 100 promotions)" "$slipway plan --repo $work/repo --base main --head pr --path registry --format json" \
  "${before[@]}" \
  -n "check-jsonschema (same files)" "$work/check-jsonschema.sh"

{
  for cmd in "$slipway validate $reg" "$slipway plan --repo $work/repo --base main --head pr --path registry --format json"; do
    /usr/bin/time -f "%M KB max RSS, %e s: ${cmd/#$root\//}" $cmd > /dev/null 2>"$work/time.err" || true
    tail -1 "$work/time.err"
  done
} | tee "$work/memory.txt"
"$root/target/release/examples/bench_policy" | tee "$work/policy.txt"
cat "$work/results.md"
