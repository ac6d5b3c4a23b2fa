package bench

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPU returns the CPU time consumed by the calling OS thread, from
// clock_gettime(CLOCK_THREAD_CPUTIME_ID): nanosecond resolution, where
// getrusage(RUSAGE_THREAD) can be tick-granular. Callers hold
// runtime.LockOSThread.
func threadCPU() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// ThreadCPUTime reports whether single-goroutine rows are timed in thread
// CPU time (true here) rather than wall-clock time.
const ThreadCPUTime = true
