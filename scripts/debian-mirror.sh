#!/usr/bin/env bash
# Prints the machine's own Debian mirror for bookworm: DEBIAN_MIRROR when set, else the first URI
# of an apt source (deb822 `*.sources`, then sources.list) that serves a bookworm suite.
# `debian-mirror.sh security` prints the one serving bookworm-security (DEBIAN_SECURITY_MIRROR).
# Fails, saying what to do, when apt has none.
set -euo pipefail
want=${1:-main}
if [[ $want == security ]]; then
  [[ -n ${DEBIAN_SECURITY_MIRROR:-} ]] && { echo "$DEBIAN_SECURITY_MIRROR"; exit 0; }
  suite='^bookworm-security$' label=bookworm-security
else
  [[ -n ${DEBIAN_MIRROR:-} ]] && { echo "$DEBIAN_MIRROR"; exit 0; }
  suite='^bookworm(-updates)?$' label=bookworm
fi
# deb822: one paragraph per source, with `URIs:` and `Suites:` fields.
mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$suite" '
  BEGIN { RS = ""; FS = "\n" }
  { uri = ""; hit = 0
    for (i = 1; i <= NF; i++) {
      if ($i ~ /^URIs:/) { split(substr($i, 6), u, " "); for (k in u) if (u[k] != "") { uri = u[k]; break } }
      if ($i ~ /^Suites:/) { n = split(substr($i, 8), s, " "); for (j = 1; j <= n; j++) if (s[j] ~ suite) hit = 1 }
    }
    if (hit && uri != "") { print uri; exit } }' || true)
if [[ -z $mirror ]]; then
  mirror=$(awk -v suite="$suite" '$1 == "deb" {
      for (i = 2; i < NF; i++) if ($i ~ /^(https?|file):/ && $(i + 1) ~ suite) {print $i; exit}}' \
    /etc/apt/sources.list 2>/dev/null || true)
fi
if [[ -z $mirror ]]; then
  echo "no apt source serves Debian $label in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; configure apt, or set DEBIAN_MIRROR" >&2
  exit 1
fi
echo "$mirror"
