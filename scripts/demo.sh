#!/usr/bin/env bash
# The demo: an SFrame round trip through the CLI, with the header inspected.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/sframe ./cmd/sframe
key=000102030405060708090a0b0c0d0e0f
echo "plaintext: hello, relay-proof media"
printf 'hello, relay-proof media' |
	bin/sframe encrypt -suite 4 -key "$key" -kid 291 -ctr 17767 -metadata "track=video/1" >bin/demo.sframe
echo "ciphertext: $(od -An -tx1 bin/demo.sframe | tr -d ' \n')"
bin/sframe inspect <bin/demo.sframe
echo -n "decrypted: "
bin/sframe decrypt -suite 4 -key "$key" -metadata "track=video/1" <bin/demo.sframe
echo
bin/sframe verify-vectors sframe/testdata/test-vectors.json
