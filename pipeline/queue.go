package pipeline

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// queue is a bounded FIFO of one shard's objects, and the right to process
// them. At most one goroutine holds that right (busy) at a time: the shard's
// worker, or a submitter that found the shard idle (caller-runs). That one
// rule keeps each track's order whoever processes it. The holder owns the
// queueWork part. Synchronisation costs one uncontended mutex per object,
// and a wake-up only when the worker was parked.
//
// The two parts sit on cache lines of their own, and a queue on lines no
// other queue shares: the lock and the pending objects are written by the
// shard's producers and its processor, the work state by the processor
// alone, on every batch, and with two shards processed on two cores the
// other shard's lock word must not share a line with them (queues used to
// be 280-byte objects, packed two per 576 bytes).
type queue struct {
	queueSync
	_ [queuePart - unsafe.Sizeof(queueSync{})]byte
	queueWork
	_ [queuePart - unsafe.Sizeof(queueWork{})]byte
}

// queuePart is the size of each part of a queue. A queue is then 512
// bytes, an allocation size class whose objects are 512-byte aligned.
const queuePart = 256

type queueSync struct {
	mu       sync.Mutex
	notEmpty sync.Cond // the worker waits for objects it may take
	notFull  sync.Cond // producers wait for room
	pending  []Object  // objects pending[head:] are queued; cap is the bound
	head     int       // first queued object: take advances it, push compacts
	waiting  bool      // worker is parked on notEmpty
	busy     bool      // someone is processing this shard
	closed   bool
	bound    int // cap(pending), readable without the lock
}

// queueWork is held by whoever is busy, and counts what it processed (read
// by Stage.Stats at any time).
type queueWork struct {
	b     Batcher
	batch []Object

	objects, bytes, errs, authFailed atomic.Uint64
}

func newQueue(n, maxBatch int) *queue {
	q := &queue{queueSync: queueSync{pending: make([]Object, 0, n), bound: n}, queueWork: queueWork{batch: make([]Object, 0, maxBatch)}}
	q.notEmpty.L, q.notFull.L = &q.mu, &q.mu
	return q
}

// push appends o. When the queue is full it fails with ErrQueueFull unless
// wait is set, and then waits for room or for ctx to end.
func (q *queue) push(ctx context.Context, o *Object, wait bool) error {
	q.mu.Lock()
	if q.fullLocked() && !q.closed {
		if !wait {
			q.mu.Unlock()
			return ErrQueueFull
		}
		if err := q.waitRoomLocked(ctx); err != nil {
			q.mu.Unlock()
			return err
		}
	}
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.makeRoomLocked()
	q.pending = append(q.pending, *o)
	q.unlockAndWake()
	return nil
}

// fullLocked reports whether bound objects are queued. The caller holds
// q.mu.
func (q *queue) fullLocked() bool { return len(q.pending)-q.head == q.bound }

// emptyLocked reports whether no object is queued. The caller holds q.mu.
func (q *queue) emptyLocked() bool { return len(q.pending) == q.head }

// makeRoomLocked moves the queued objects to the start of pending once the
// last slot is used and take has freed some at the front, so appends stay
// in place. Each object moves at most once per trip through the queue;
// take itself never moves the objects behind the ones it takes (with a
// backlog that was a copy of the whole queue, under the lock, per batch).
// The caller holds q.mu and has checked the queue is not full.
func (q *queue) makeRoomLocked() {
	if len(q.pending) == cap(q.pending) && q.head > 0 {
		n := copy(q.pending, q.pending[q.head:])
		clear(q.pending[n:])
		q.pending, q.head = q.pending[:n], 0
	}
}

// waitRoomLocked waits, holding q.mu, until the queue has room, is closed,
// or ctx ends (then it returns ctx's error).
func (q *queue) waitRoomLocked(ctx context.Context) error {
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
	for q.fullLocked() && !q.closed && ctx.Err() == nil {
		q.notFull.Wait()
	}
	stop()
	if err := ctx.Err(); err != nil && q.fullLocked() {
		return err
	}
	return nil
}

// unlockAndWake releases q.mu and wakes the parked worker if it now has
// something to do: objects nobody processes, or a closed queue to leave.
func (q *queue) unlockAndWake() {
	wake := q.waiting && !q.busy && (!q.emptyLocked() || q.closed)
	q.mu.Unlock()
	if wake {
		q.notEmpty.Signal()
	}
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
		for ; i < len(objs) && !q.fullLocked(); i++ {
			if objs[i].Track.shard%n == w {
				q.makeRoomLocked()
				q.pending = append(q.pending, objs[i])
				queued++
			}
		}
		q.unlockAndWake()
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

// idle reports whether nobody processes the shard right now: a hint, the
// answer may change at once.
func (q *queue) idle() bool {
	q.mu.Lock()
	ok := !q.busy && !q.closed
	q.mu.Unlock()
	return ok
}

// claim makes the caller the shard's processor if nobody is, and reports
// whether it did. A closed queue is never claimed by a submitter.
func (q *queue) claim() bool {
	q.mu.Lock()
	ok := !q.busy && !q.closed
	q.busy = q.busy || ok
	q.mu.Unlock()
	return ok
}

// spins bounds how many times a worker that ran out of objects yields and
// looks again before parking, about 10-20 µs. A producer feeding bursts
// refills the queue within that time; a parked worker would cost a futex
// wake-up per burst, as long as the burst's work itself on a 2-CPU machine.
const spins = 64

// wait parks the worker until the queue has objects and nobody processes
// them, then claims it. It returns false once the queue is closed, drained
// and idle: the worker may leave.
func (q *queue) wait() bool {
	q.mu.Lock()
	for i := 0; i < spins && q.emptyLocked() && !q.closed; i++ {
		q.mu.Unlock()
		runtime.Gosched()
		q.mu.Lock()
	}
	for (q.busy || q.emptyLocked()) && !(q.closed && q.emptyLocked() && !q.busy) {
		q.waiting = true
		q.notEmpty.Wait()
		q.waiting = false
	}
	if q.emptyLocked() {
		q.mu.Unlock()
		return false
	}
	q.busy = true
	q.mu.Unlock()
	return true
}

// take moves up to max pending objects to q.batch, in order; the caller
// holds the claim. It returns false when nothing is pending.
func (q *queue) take(max int) bool {
	q.batch = q.batch[:0]
	q.mu.Lock()
	if q.emptyLocked() {
		q.mu.Unlock()
		return false
	}
	wasFull := q.fullLocked()
	taken := q.pending[q.head:min(len(q.pending), q.head+max)]
	q.batch = append(q.batch, taken...)
	clear(taken) // drop references to payloads
	q.head += len(taken)
	if q.emptyLocked() {
		q.pending, q.head = q.pending[:0], 0
	}
	q.mu.Unlock()
	if wasFull {
		q.notFull.Broadcast()
	}
	return true
}

// release gives up the claim, waking the worker if objects came in
// meanwhile (or the queue was closed).
func (q *queue) release() {
	q.mu.Lock()
	q.busy = false
	q.unlockAndWake()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
}
