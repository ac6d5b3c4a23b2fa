//go:build !linux

package bench

import "time"

var start0 = time.Now()

func threadCPU() time.Duration { return time.Since(start0) }

// ThreadCPUTime reports whether single-goroutine rows are timed in thread
// CPU time (false here: wall-clock time) rather than wall-clock time.
const ThreadCPUTime = false
