#!/usr/bin/env bash
# Walks through a promotion pull request for the football-frames registry:
# builds a throw-away git repository (main = examples/football-frames, branch promote-v8 moves
# `production` from 7 to 8), then runs `slipway plan` as CI would, before and after an ML lead
# approves the head commit. Commits use fixed dates, so the commit ids below are reproducible.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
format=${1:-text}
# SLIPWAY=/path/to/slipway uses that binary instead of building one.
slipway=${SLIPWAY:-}
if [ -z "$slipway" ]; then
  cargo build -q --manifest-path "$root/Cargo.toml" -p slipway
  slipway="$root/target/debug/slipway"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME=dana GIT_AUTHOR_EMAIL=dana@footy-ml.example GIT_COMMITTER_NAME=dana GIT_COMMITTER_EMAIL=dana@footy-ml.example
commit() { GIT_AUTHOR_DATE="$1" GIT_COMMITTER_DATE="$1" git -C "$work" commit -q -am "$2"; }

git -C "$work" init -q -b main
cp -r "$here/football-frames/." "$work/"
git -C "$work" add -A
commit "2026-11-20T09:00:00Z" "Register pitch-frame-classifier versions 7 and 8"

git -C "$work" checkout -q -b promote-v8
sed -i 's/  version: "7"/  version: "8"/' "$work/aliases.yaml"
commit "2026-11-24T22:00:00Z" "Promote pitch-frame-classifier 8 to production"
first=$(git -C "$work" rev-parse HEAD)
sed -i 's/      - weight: 10$/      - weight: 5/' "$work/deployments.yaml"
commit "2026-11-25T08:30:00Z" "Start the canary at 5% for the first night matches"
head=$(git -C "$work" rev-parse HEAD)

review() { printf '{"user": {"login": "%s"}, "state": "%s", "commit_id": "%s", "submitted_at": "%s"}' "$@"; }
cat > "$work/reviews-1.json" <<JSON
[$(review alice APPROVED "$first" 2026-11-24T22:10:00Z),
 $(review erin APPROVED "$head" 2026-11-25T08:40:00Z),
 $(review bob COMMENTED "$head" 2026-11-25T08:45:00Z)]
JSON
cat > "$work/reviews-2.json" <<JSON
[$(review alice APPROVED "$first" 2026-11-24T22:10:00Z),
 $(review erin APPROVED "$head" 2026-11-25T08:40:00Z),
 $(review bob COMMENTED "$head" 2026-11-25T08:45:00Z),
 $(review alice APPROVED "$head" 2026-11-25T09:05:00Z)]
JSON

plan() {
  set +e
  "$slipway" plan --repo "$work" --base main --head promote-v8 --author dana \
    --reviews "$@" --format "$format" --now 2026-11-25T09:30:00Z
  echo "exit code: $?"
  set -e
}
echo "### Round 0: the evaluation of version 8 has not reported yet (no --results)"
if [[ $format == text ]]; then
  plan "$work/reviews-2.json" | grep -E "✗|⇒ denied|^Plan|exit code|^ +[+~-] " || true
else
  plan "$work/reviews-2.json"
fi
echo
echo "### Round 1: alice approved an earlier push, erin is not an ML lead, bob only commented"
plan "$work/reviews-1.json" --results "$here/promotion-pr/results"
echo
echo "### Round 2: alice approves the head commit"
plan "$work/reviews-2.json" --results "$here/promotion-pr/results"
