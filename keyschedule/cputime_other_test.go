//go:build !linux

package keyschedule

import "testing"

func cpuLoop(b *testing.B, f func()) {
	for b.Loop() {
		f()
	}
}

func excludeCPU(f func()) { f() }
