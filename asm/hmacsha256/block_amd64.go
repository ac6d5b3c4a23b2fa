//go:build amd64 && !purego

package hmacsha256

import (
	"sync/atomic"

	"github.com/klauspost/cpuid/v2"

	"github.com/moqsframe/moqsframe/internal/impl"
)

//go:noescape
func blockSHANI(h *[8]uint32, p []byte)

// useSHANI is the switch tests and benchmarks flip through internal/impl;
// it starts as whether the CPU has the SHA extensions (and the SSE4.1 and
// SSSE3 shuffles the kernel uses).
var useSHANI atomic.Bool

func init() {
	useSHANI.Store(cpuid.CPU.Supports(cpuid.SHA, cpuid.SSE4, cpuid.SSSE3))
	impl.Register("hmacsha256", "shani", &useSHANI)
}

// block hashes the len(p)/64 whole blocks of p into h. It is a direct call,
// not a function value, so that h and p stay on the caller's stack.
func block(h *[8]uint32, p []byte) {
	if useSHANI.Load() {
		blockSHANI(h, p)
	} else {
		blockGeneric(h, p)
	}
}
