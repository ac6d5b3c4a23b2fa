package pipeline

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/moqsframe/moqsframe/sframe"
)

// ErrClosed means the stage no longer accepts objects.
var ErrClosed = errors.New("pipeline: stage closed")

// ErrQueueFull means TrySubmit found the track's queue full; the object was
// dropped and counted.
var ErrQueueFull = errors.New("pipeline: queue full, object dropped")

// Config sizes a Stage.
type Config struct {
	// Workers is the number of goroutines; default runtime.GOMAXPROCS(0).
	Workers int
	// QueueLen bounds each worker's queue, in objects; default 1024. Submit
	// blocks when it is full, so memory never grows without bound.
	QueueLen int
	// MaxBatch bounds how many queued objects a worker processes per call
	// to the Batcher and to emit; default 32.
	MaxBatch int
}

// Stats counts a stage's work.
type Stats struct {
	Objects    uint64 // processed successfully
	Bytes      uint64 // payload bytes of those objects
	Drops      uint64 // refused by a full queue or a closed stage
	Errors     uint64 // failed to seal or open
	AuthFailed uint64 // of Errors, failed authentication
}

// A Stage seals or opens objects on worker goroutines, and on the
// goroutines that submit them. Each track's objects always belong to the
// same shard, and a shard is processed by one goroutine at a time, so they
// come out in the order they went in; different tracks spread over the
// shards.
//
// Submit and SubmitBatch do their share of the work (caller-runs): objects
// of a shard that nobody is processing at that moment are sealed or opened
// on the calling goroutine, after whatever that shard had queued, and emit
// is called there; the rest are queued for the shards' workers. A producer
// therefore never waits on a hand-off to an idle worker, and a producer with
// W workers keeps up to W+1 cores busy without more goroutines than cores
// being runnable. TrySubmit only queues.
type Stage struct {
	seal     bool
	emit     func([]Object)
	queues   []*queue
	maxBatch int
	wg       sync.WaitGroup
	// Written by submitters only: off the lines the fields above are
	// read from on every call. The processing counters live in each
	// shard's queue, written by its processor alone.
	_       [64]byte
	lastOwn atomic.Int32 // shard a submitter processed last
	drops   atomic.Uint64
}

// NewSealStage starts a stage that seals objects with their track's Sealer.
// emit receives each processed batch, in per-track order, on a worker
// goroutine or on a goroutine inside Submit or SubmitBatch; objects whose
// Err is set failed and are counted. emit must not keep the slice, and must
// be safe to call from several goroutines at once.
func NewSealStage(cfg Config, emit func([]Object)) *Stage { return newStage(true, cfg, emit) }

// NewOpenStage starts a stage that opens objects with their track's Opener.
// emit is as for NewSealStage.
func NewOpenStage(cfg Config, emit func([]Object)) *Stage { return newStage(false, cfg, emit) }

func newStage(seal bool, cfg Config, emit func([]Object)) *Stage {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 32
	}
	s := &Stage{seal: seal, emit: emit, queues: make([]*queue, cfg.Workers), maxBatch: cfg.MaxBatch}
	for i := range s.queues {
		s.queues[i] = newQueue(cfg.QueueLen, cfg.MaxBatch)
		s.wg.Add(1)
		go s.work(s.queues[i])
	}
	return s
}

func (s *Stage) queue(o *Object) *queue {
	return s.queues[o.Track.shard%uint32(len(s.queues))]
}

// SubmitBatch queues objs, waiting while queues are full, like Submit for
// each in order, but taking each worker's queue lock about once per call:
// the way to feed a stage a burst of objects cheaply. The objects of one
// idle shard are processed on the calling goroutine (see Stage); objs
// itself is not modified. On error, the objects not queued are counted as
// dropped.
func (s *Stage) SubmitBatch(ctx context.Context, objs []Object) error {
	n := uint32(len(s.queues))
	// The shard this goroutine will process itself: an idle one with
	// objects in this burst, preferably the one a submitter ran last, so
	// the same workers keep being the ones woken. The others are queued
	// first, so their workers start while we work, and we hold no claim
	// while waiting for room (two submitters each holding a shard the other
	// waits on would deadlock).
	own := -1
	if w := int(s.lastOwn.Load()); w < len(s.queues) && s.queues[w].idle() && hasShard(objs, uint32(w), n) {
		own = w
	} else {
		for w, q := range s.queues { // one lock per shard, not per object
			if q.idle() && hasShard(objs, uint32(w), n) {
				own = w
				break
			}
		}
	}
	var firstErr error
	for w, q := range s.queues {
		if w == own {
			continue
		}
		if err := s.pushShard(ctx, q, objs, uint32(w), n); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if own >= 0 {
		q := s.queues[own]
		if q.claim() {
			if s.lastOwn.Load() != int32(own) {
				s.lastOwn.Store(int32(own))
			}
			s.runWith(q, objs, uint32(own), n)
		} else if err := s.pushShard(ctx, q, objs, uint32(own), n); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func hasShard(objs []Object, w, n uint32) bool {
	for i := range objs {
		if objs[i].Track.shard%n == w {
			return true
		}
	}
	return false
}

// pushShard queues the objects of shard w, counting those it could not.
func (s *Stage) pushShard(ctx context.Context, q *queue, objs []Object, w, n uint32) error {
	want := 0
	for i := range objs {
		if objs[i].Track.shard%n == w {
			want++
		}
	}
	if want == 0 {
		return nil
	}
	got, err := q.pushAll(ctx, objs, w, n)
	if err != nil {
		s.drops.Add(uint64(want - got))
	}
	return err
}

// runWith processes, on the calling goroutine that claimed q, what q had
// queued and then the objects of objs in shard w (all of objs when n is 1),
// and releases q. Objects other producers queue meanwhile are drained too,
// up to one queue's worth, so a submitter's share stays bounded; the worker
// is woken for any left.
func (s *Stage) runWith(q *queue, objs []Object, w, n uint32) {
	for drained := 0; drained < q.bound && q.take(s.maxBatch); drained += len(q.batch) {
		s.process(q)
	}
	for i := 0; i < len(objs); {
		q.batch = q.batch[:0]
		for ; i < len(objs) && len(q.batch) < s.maxBatch; i++ {
			if objs[i].Track.shard%n == w {
				q.batch = append(q.batch, objs[i])
			}
		}
		if len(q.batch) > 0 {
			s.process(q)
		}
	}
	q.release()
}

// Submit queues o, waiting while its queue is full (backpressure), or
// processes it on the calling goroutine if its shard is idle (see Stage).
// It returns ErrClosed after Close, or ctx's error if ctx ends first;
// either way the object is counted as dropped.
func (s *Stage) Submit(ctx context.Context, o Object) error {
	q := s.queue(&o)
	if q.claim() {
		s.runWith(q, []Object{o}, 0, 1)
		return nil
	}
	return s.push(ctx, &o, true)
}

// TrySubmit queues o if its queue has room, and otherwise drops and counts
// it (ErrQueueFull), for callers that must never wait, such as live media
// past its deadline. It never processes objects itself.
func (s *Stage) TrySubmit(o Object) error { return s.push(context.Background(), &o, false) }

func (s *Stage) push(ctx context.Context, o *Object, wait bool) error {
	err := s.queue(o).push(ctx, o, wait)
	if err != nil {
		s.drops.Add(1)
	}
	return err
}

// Close stops accepting objects, processes everything already queued, and
// returns when the workers have finished.
func (s *Stage) Close() {
	for _, q := range s.queues {
		q.close()
	}
	s.wg.Wait()
}

func (s *Stage) work(q *queue) {
	defer s.wg.Done()
	for q.wait() {
		for q.take(s.maxBatch) {
			s.process(q)
		}
		q.release()
	}
}

// process seals or opens q.batch, counts and emits it. The caller holds
// q's claim.
func (s *Stage) process(q *queue) {
	if s.seal {
		q.b.Seal(q.batch)
	} else {
		q.b.Open(q.batch)
	}
	q.count()
	s.emit(q.batch)
	clear(q.batch) // drop references to payloads
}

// count adds q.batch's outcomes to q's counters. The caller holds q's
// claim.
func (q *queue) count() {
	var n, bytes, errs, auth uint64
	for i := range q.batch {
		switch err := q.batch[i].Err; {
		case err == nil:
			n++
			bytes += uint64(len(q.batch[i].Payload))
		case errors.Is(err, sframe.ErrAuthentication):
			auth++
			errs++
		default:
			errs++
		}
	}
	q.objects.Add(n)
	q.bytes.Add(bytes)
	if errs > 0 {
		q.errs.Add(errs)
		q.authFailed.Add(auth)
	}
}

// Stats returns the stage's counters.
func (s *Stage) Stats() Stats {
	st := Stats{Drops: s.drops.Load()}
	for _, q := range s.queues {
		st.Objects += q.objects.Load()
		st.Bytes += q.bytes.Load()
		st.Errors += q.errs.Load()
		st.AuthFailed += q.authFailed.Load()
	}
	return st
}
