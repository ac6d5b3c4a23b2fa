//go:build !sframe_bench_plaintext

package main

import (
	"log/slog"

	"github.com/moqsframe/moqsframe/sidecar"
)

// benchKeys returns keys unchanged. A binary built with the
// sframe_bench_plaintext tag (benchkeys_plaintext.go) replaces them, for
// BenchmarkSidecarLoopback's plaintext reference only.
func benchKeys(keys sidecar.KeySource, _ *slog.Logger) sidecar.KeySource { return keys }
