#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine: Go modules, and
# Debian's ffmpeg (the real encoder of the end-to-end test), curl (the demo) and
# chromium (the browser of the WebRTC tests: WHIP, WHEP, the player page) and
# etcd-server (the three-member cluster of the CS-on-etcd tests). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

go mod download

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "setup: installing ${missing[*]} from Debian" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "setup: ${missing[*]} missing; install them (apt-get install ${missing[*]}) for the demo and end-to-end tests" >&2
	fi
fi
