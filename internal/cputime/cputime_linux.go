package cputime

import (
	"syscall"
	"time"
	"unsafe"
)

// ThreadAvailable reports whether Thread is the thread's CPU time (true
// here) rather than wall-clock time.
const ThreadAvailable = true

// Thread returns the CPU time the calling OS thread has used, from
// clock_gettime(CLOCK_THREAD_CPUTIME_ID): nanosecond resolution, where
// getrusage(RUSAGE_THREAD) is tick-granular. Callers hold
// runtime.LockOSThread.
func Thread() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Process returns the CPU time (user and system, all threads) this
// process has used.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
