//go:build sframe_bench_plaintext

package main

import (
	"log/slog"

	"github.com/moqsframe/moqsframe/pipeline"
	"github.com/moqsframe/moqsframe/sidecar"
)

// benchKeys turns SFrame off: objects pass through as plaintext, so
// BenchmarkSidecarLoopback can measure the identical path without it. Only
// that benchmark builds with the sframe_bench_plaintext tag.
func benchKeys(_ sidecar.KeySource, log *slog.Logger) sidecar.KeySource {
	log.Warn("benchmark build: SFrame is off, media passes in plaintext")
	return plaintextKeys{}
}

type plaintextKeys struct{}

func (plaintextKeys) Sealer(*pipeline.Track) (pipeline.Sealer, error) { return passThrough{}, nil }
func (plaintextKeys) Opener(*pipeline.Track) (pipeline.Opener, error) { return passThrough{}, nil }

// passThrough copies the object as it is.
type passThrough struct{}

func (passThrough) Seal(dst, _, plaintext []byte) ([]byte, error) {
	return append(dst, plaintext...), nil
}
func (passThrough) Open(dst, _, ciphertext []byte) ([]byte, error) {
	return append(dst, ciphertext...), nil
}
