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

// A Stage seals or opens objects on worker goroutines. Each track's objects
// always go to the same worker, so they come out in the order they went in;
// different tracks spread over the workers.
type Stage struct {
	seal   bool
	emit   func([]Object)
	queues []*queue
	wg     sync.WaitGroup

	objects, bytes, drops, errs, authFailed atomic.Uint64
}

// NewSealStage starts a stage that seals objects with their track's Sealer.
// emit receives each processed batch, in per-track order, on a worker
// goroutine; objects whose Err is set failed and are counted. emit must not
// keep the slice, and must be safe to call from several workers at once.
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
	s := &Stage{seal: seal, emit: emit, queues: make([]*queue, cfg.Workers)}
	for i := range s.queues {
		s.queues[i] = newQueue(cfg.QueueLen)
		s.wg.Add(1)
		go s.work(s.queues[i], cfg.MaxBatch)
	}
	return s
}

func (s *Stage) queue(o *Object) *queue {
	return s.queues[o.Track.shard%uint32(len(s.queues))]
}

// SubmitBatch queues objs, waiting while queues are full, like Submit for
// each in order, but taking each worker's queue lock about once per call:
// the way to feed a stage a burst of objects cheaply. On error, the objects
// not queued are counted as dropped.
func (s *Stage) SubmitBatch(ctx context.Context, objs []Object) error {
	n := uint32(len(s.queues))
	var firstErr error
	for w, q := range s.queues {
		want := 0
		for i := range objs {
			if objs[i].Track.shard%n == uint32(w) {
				want++
			}
		}
		if want == 0 {
			continue
		}
		got, err := q.pushAll(ctx, objs, uint32(w), n)
		if err != nil {
			s.drops.Add(uint64(want - got))
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// Submit queues o, waiting while its queue is full (backpressure). It
// returns ErrClosed after Close, or ctx's error if ctx ends first; either
// way the object is counted as dropped.
func (s *Stage) Submit(ctx context.Context, o Object) error { return s.push(ctx, &o, true) }

// TrySubmit queues o if its queue has room, and otherwise drops and counts
// it (ErrQueueFull), for callers that must never wait, such as live media
// past its deadline.
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

func (s *Stage) work(q *queue, maxBatch int) {
	defer s.wg.Done()
	var b Batcher
	batch := make([]Object, 0, maxBatch)
	for {
		var ok bool
		if batch, ok = q.take(batch[:0], maxBatch); !ok {
			return
		}
		if s.seal {
			b.Seal(batch)
		} else {
			b.Open(batch)
		}
		s.count(batch)
		s.emit(batch)
		clear(batch) // drop references to payloads
	}
}

func (s *Stage) count(batch []Object) {
	var n, bytes, errs, auth uint64
	for i := range batch {
		switch err := batch[i].Err; {
		case err == nil:
			n++
			bytes += uint64(len(batch[i].Payload))
		case errors.Is(err, sframe.ErrAuthentication):
			auth++
			errs++
		default:
			errs++
		}
	}
	s.objects.Add(n)
	s.bytes.Add(bytes)
	s.errs.Add(errs)
	s.authFailed.Add(auth)
}

// Stats returns the stage's counters.
func (s *Stage) Stats() Stats {
	return Stats{
		Objects: s.objects.Load(), Bytes: s.bytes.Load(), Drops: s.drops.Load(),
		Errors: s.errs.Load(), AuthFailed: s.authFailed.Load(),
	}
}
