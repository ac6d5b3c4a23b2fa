package aesgcm

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPU returns the CPU time consumed by the calling OS thread, so that
// the ratio table is not distorted by other processes on a busy machine.
// Callers must hold runtime.LockOSThread. clock_gettime(CLOCK_THREAD_
// CPUTIME_ID) has nanosecond resolution; getrusage(RUSAGE_THREAD), used
// before, was tick-granular here, which quantised every ratio of 20 ms
// rounds to steps of several percent.
func threadCPU() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

const haveThreadCPU = true
