//go:build linux

package keyschedule

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU returns the calling thread's user+system CPU time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuExcluded is CPU time a benchmark body spent on setup that cpuLoop
// must not count; only touch it from inside cpuLoop's f.
var cpuExcluded time.Duration

// excludeCPU runs f and books its CPU time as excluded.
func excludeCPU(f func()) {
	c0 := threadCPU()
	f()
	cpuExcluded += threadCPU() - c0
}

// cpuLoop runs f b.N times on one locked OS thread and reports, besides the
// wall-clock ns/op, cpu-ns/op: the thread's CPU time per operation, which
// other processes competing for the cores inflate far less.
func cpuLoop(b *testing.B, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpuExcluded = 0
	c0 := threadCPU()
	n := 0
	for b.Loop() {
		f()
		n++
	}
	if n > 0 {
		b.ReportMetric(float64(threadCPU()-c0-cpuExcluded)/float64(n), "cpu-ns/op")
	}
}
