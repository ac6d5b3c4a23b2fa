package aesgcm

import (
	"runtime"
	"syscall"
	"time"
)

// threadCPU returns the CPU time consumed by the calling OS thread, so that
// the ratio table is not distorted by other processes on a busy machine.
// Callers must hold runtime.LockOSThread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const haveThreadCPU = true

var _ = runtime.LockOSThread
