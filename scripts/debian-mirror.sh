#!/usr/bin/env bash
# Prints the machine's own Debian mirror: the first non-security URI of its deb822 sources, else of
# /etc/apt/sources.list. Fails, saying what to do, when apt has none.
set -euo pipefail
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' | grep -v security | grep . | head -1 || true)
if [[ -z $mirror ]]; then
  mirror=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/ && $i !~ /security/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
fi
if [[ -z $mirror ]]; then
  echo "no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; configure apt first" >&2
  exit 1
fi
echo "$mirror"
