#!/usr/bin/env bash
# Prints the files of the lists named (SPI_SRCS RUNTIME_SRCS ...) from
# src/sources.mk, the one source list, space-separated.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in "$@"; do
  sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' src/sources.mk | sed -n "s/^$name *= *//p"
done | tr -s ' \t\n' ' ' | sed 's/^ //; s/ $//'
echo
