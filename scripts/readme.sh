#!/usr/bin/env bash
# Runs every ```sh block of README.md, in order, in one bash shell (as a
# person would paste them into one terminal), in a scratch copy of the tree,
# so that the README cannot drift from what the commands do. The first
# block's `make test` is left out (this script is part of make test); its
# `make demo` runs with DEMO_SECONDS=5. A failing command (set -e) or a run
# longer than README_TIMEOUT (default 600 s) fails; processes the blocks
# leave running are killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
scratch="$(mktemp -d)"
# Whatever the blocks started and left running (their working directory is
# the scratch copy) is stopped at the end, pass or fail.
cleanup() {
	cd "$repo"
	for p in /proc/[0-9]*; do
		case "$(readlink "$p/cwd" 2>/dev/null)" in "$scratch"*) kill "${p#/proc/}" 2>/dev/null || true ;; esac
	done
	rm -rf "$scratch"
}
trap cleanup EXIT
tar --exclude=./.git --exclude=./bin --exclude=./demo-out -cf - . | tar -xf - -C "$scratch"

script="$scratch/readme-blocks.sh"
{
	echo 'set -euo pipefail'
	echo 'export DEMO_SECONDS=5'
	awk '
		/^```sh$/ { inblock = 1; n++; printf "echo \"== README.md block %d (line %d)\" >&2\n", n, NR; next }
		/^```/ && inblock { inblock = 0; next }
		inblock && n == 1 && $1 == "make" && $2 == "test" { next }
		inblock { print }
	' "$repo/README.md"
} >"$script"
cd "$scratch"
timeout "${README_TIMEOUT:-600}" bash "$script"
echo "readme: every block of README.md ran"
