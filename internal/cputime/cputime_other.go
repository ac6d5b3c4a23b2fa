//go:build !linux

package cputime

import "time"

// ThreadAvailable reports whether Thread is the thread's CPU time rather
// than wall-clock time (false here).
const ThreadAvailable = false

var start = time.Now()

// Thread falls back to wall-clock time where there is no per-thread CPU
// clock.
func Thread() time.Duration { return time.Since(start) }

// Process falls back to wall-clock time.
func Process() time.Duration { return time.Since(start) }
