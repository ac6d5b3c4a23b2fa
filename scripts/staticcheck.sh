#!/usr/bin/env bash
# Runs staticcheck at a pinned version, installing it on first use.
set -euo pipefail
version=v0.7.0
bin="$(go env GOPATH)/bin/staticcheck"
if ! "$bin" -version 2>/dev/null | grep -q "${version#v}"; then
	go install "honnef.co/go/tools/cmd/staticcheck@$version"
fi
"$bin" "$@"
