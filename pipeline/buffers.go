package pipeline

import "sync"

// Buffers is a bounded free list of byte slices for Object.Payload and
// Object.Out, safe for concurrent use. It is LIFO: Get hands out the
// buffer returned most recently, whose cache lines are the most likely to
// still be in a CPU cache. A FIFO (a channel) cycles through every free
// buffer in turn, so with more buffers than the caches hold each object's
// output would go to cold memory: BenchmarkPipelineWorkers measured that as
// most of the difference between a stage and bare sealing.
type Buffers struct {
	mu   sync.Mutex
	free [][]byte
	max  int
	size int
}

// NewBuffers returns a free list that keeps at most max buffers; buffers it
// makes have at least size bytes of capacity.
func NewBuffers(max, size int) *Buffers {
	return &Buffers{free: make([][]byte, 0, max), max: max, size: size}
}

// Get returns an empty buffer with capacity for at least n bytes: the most
// recently returned one if it is large enough, else a new one.
func (b *Buffers) Get(n int) []byte {
	var buf []byte // nil if the list is empty (Put keeps no empty buffer)
	b.mu.Lock()
	if k := len(b.free); k > 0 {
		buf = b.free[k-1]
		b.free[k-1] = nil
		b.free = b.free[:k-1]
	}
	b.mu.Unlock()
	if buf != nil && cap(buf) >= n {
		return buf[:0]
	}
	return make([]byte, 0, max(n, b.size))
}

// Put returns buf for reuse; the caller must not use it afterwards. When
// the list is full, buf is left to the garbage collector.
func (b *Buffers) Put(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	b.mu.Lock()
	if len(b.free) < b.max {
		b.free = append(b.free, buf)
	}
	b.mu.Unlock()
}
