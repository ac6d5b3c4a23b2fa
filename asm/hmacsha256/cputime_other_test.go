//go:build !linux

package hmacsha256

import "time"

var epoch = time.Now()

// threadCPU falls back to wall time where there is no per-thread CPU clock.
func threadCPU() time.Duration { return time.Since(epoch) }
