package pipeline

import (
	"context"
	"sync"
)

// queue is a bounded FIFO between producers and one worker. The worker takes
// everything pending in one swap, so synchronisation costs one uncontended
// mutex per object and a wake-up only when the worker was idle, not a
// channel operation and a possible park per object.
type queue struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	pending  []Object // cap is the queue's bound
	waiting  bool     // worker is parked on notEmpty
	closed   bool
}

func newQueue(n int) *queue {
	q := &queue{pending: make([]Object, 0, n)}
	q.notEmpty.L, q.notFull.L = &q.mu, &q.mu
	return q
}

// push appends o. When the queue is full it fails with ErrQueueFull unless
// wait is set, and then waits for room or for ctx to end.
func (q *queue) push(ctx context.Context, o *Object, wait bool) error {
	q.mu.Lock()
	if len(q.pending) == cap(q.pending) && !q.closed {
		if !wait {
			q.mu.Unlock()
			return ErrQueueFull
		}
		// Wake the Wait below when ctx ends. A context that can never end
		// (Background) needs no watcher, and so costs no allocation.
		stop := func() bool { return false }
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, func() {
				q.mu.Lock()
				q.notFull.Broadcast()
				q.mu.Unlock()
			})
		}
		for len(q.pending) == cap(q.pending) && !q.closed && ctx.Err() == nil {
			q.notFull.Wait()
		}
		stop()
		if err := ctx.Err(); err != nil && len(q.pending) == cap(q.pending) {
			q.mu.Unlock()
			return err
		}
	}
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.pending = append(q.pending, *o)
	wake := q.waiting
	q.mu.Unlock()
	if wake {
		q.notEmpty.Signal()
	}
	return nil
}

// pushAll queues, in order, the objects of objs that belong to this queue
// (shard w of n), taking the lock once per run of free room rather than
// once per object. When the queue is full it waits like push. It returns
// how many it queued before an error.
func (q *queue) pushAll(ctx context.Context, objs []Object, w, n uint32) (int, error) {
	queued := 0
	for i := 0; i < len(objs); {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return queued, ErrClosed
		}
		for ; i < len(objs) && len(q.pending) < cap(q.pending); i++ {
			if objs[i].Track.shard%n == w {
				q.pending = append(q.pending, objs[i])
				queued++
			}
		}
		wake := q.waiting
		q.mu.Unlock()
		if wake {
			q.notEmpty.Signal()
		}
		// Full: wait for room for our next object, if any.
		for i < len(objs) && objs[i].Track.shard%n != w {
			i++
		}
		if i < len(objs) {
			if err := q.push(ctx, &objs[i], true); err != nil {
				return queued, err
			}
			queued++
			i++
		}
	}
	return queued, nil
}

// take waits for objects and moves up to max of them to dst, in order. It
// returns false when the queue is closed and drained.
func (q *queue) take(dst []Object, max int) ([]Object, bool) {
	q.mu.Lock()
	for len(q.pending) == 0 && !q.closed {
		q.waiting = true
		q.notEmpty.Wait()
		q.waiting = false
	}
	if len(q.pending) == 0 {
		q.mu.Unlock()
		return dst, false
	}
	wasFull := len(q.pending) == cap(q.pending)
	n := min(len(q.pending), max)
	dst = append(dst, q.pending[:n]...)
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	q.mu.Unlock()
	if wasFull {
		q.notFull.Broadcast()
	}
	return dst, true
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
}
