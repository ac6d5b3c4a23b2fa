#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine: Go modules, and
# Debian's ffmpeg (the real encoder of the end-to-end test). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

go mod download

if ! command -v ffmpeg >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "setup: installing ffmpeg from Debian" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
	else
		echo "setup: ffmpeg is missing; install it (apt-get install ffmpeg) for the end-to-end tests" >&2
	fi
fi
