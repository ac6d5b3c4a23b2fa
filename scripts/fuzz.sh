#!/usr/bin/env bash
# Runs every `func FuzzXxx` in the module for the given time each (default 5s).
# Go's fuzzer takes one target and one package per run, hence the loop.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-5s}"
fail=0
while IFS= read -r line; do
	file="${line%%:*}"
	name="$(sed -E 's/^.*func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")"
	pkg="./$(dirname "${file#./}")"
	echo "fuzz: $pkg $name ($fuzztime)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/fuzz.$$.log 2>&1; then
		cat /tmp/fuzz.$$.log
		fail=1
	fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '/_asm/' | sort)
rm -f /tmp/fuzz.$$.log
exit $fail
