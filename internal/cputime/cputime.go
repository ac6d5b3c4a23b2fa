// Package cputime reads CPU-time clocks for benchmarks that run their
// baseline in the same process: thread CPU time is not disturbed by other
// processes on a busy machine the way wall-clock time is.
package cputime

import (
	"runtime"
	"time"
)

// PerCall times f over about d of thread CPU time (calibrating the number
// of calls) and returns nanoseconds per call. It locks the goroutine to its
// thread while it runs.
func PerCall(f func(), d time.Duration) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for n := 1; ; {
		start := Thread()
		for range n {
			f()
		}
		el := Thread() - start
		if el >= d {
			return float64(el.Nanoseconds()) / float64(n)
		}
		if el < d/10 {
			n *= 10
		} else {
			n *= 2
		}
	}
}
