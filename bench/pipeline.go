package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/moqsframe/moqsframe/pipeline"
	"github.com/moqsframe/moqsframe/sframe"
)

// PipelineSeal returns a workload that pushes objects of size bytes through
// a sealing pipeline.Stage with the given workers, in bursts of 32,
// round-robin over tracks (each with its own Sender), and waits until all
// were emitted. It also
// returns a stop function that shuts the stage down.
func PipelineSeal(suite sframe.CipherSuite, workers, tracks, size int) (Workload, func(), error) {
	const queueLen, maxBatch = 256, 32
	ts := make([]*pipeline.Track, tracks)
	for i := range ts {
		t, err := pipeline.NewTrack([]string{"bench", "room"}, fmt.Sprintf("track%d", i))
		if err != nil {
			return nil, nil, err
		}
		if t.Sealer, err = sframe.NewSender(suite, uint64(i), make([]byte, suite.KeySize())); err != nil {
			return nil, nil, err
		}
		ts[i] = t
	}
	// Output buffers come from a LIFO free list and go back to it once
	// emitted, as a media server's would (the sidecar's do): the buffer
	// reused is the one most recently written, still in cache.
	outSize := size + sframe.MaxHeaderLen + 16 // header and the largest tag
	bufs := pipeline.NewBuffers(workers*(queueLen+maxBatch)+maxBatch, outSize)
	var emitted atomic.Int64
	done := make(chan struct{}, 1)
	var target atomic.Int64
	stage := pipeline.NewSealStage(pipeline.Config{Workers: workers, QueueLen: queueLen, MaxBatch: maxBatch},
		func(batch []pipeline.Object) {
			for i := range batch {
				if batch[i].Err != nil {
					panic(batch[i].Err)
				}
				bufs.Put(batch[i].Out)
			}
			if emitted.Add(int64(len(batch))) == target.Load() {
				done <- struct{}{}
			}
		})
	payload := make([]byte, size)
	next, obj := 0, uint64(0)
	ctx := context.Background()
	burst := make([]pipeline.Object, 0, maxBatch)
	w := func(iters int) {
		target.Add(int64(iters))
		for sent := 0; sent < iters; {
			// Objects arrive in bursts, as from a network read loop.
			burst = burst[:0]
			for ; len(burst) < maxBatch && sent < iters; sent++ {
				burst = append(burst, pipeline.Object{Track: ts[next%tracks], ObjectID: obj, Payload: payload, Out: bufs.Get(outSize)})
				next++
				obj++
			}
			if err := stage.SubmitBatch(ctx, burst); err != nil {
				panic(err)
			}
		}
		<-done
	}
	return w, stage.Close, nil
}

// ParallelSeal returns a workload that seals size-byte objects on
// goroutines sealers, each with its own Sender and its own ring of as many
// output buffers as one pipeline worker cycles through, with no queue
// between them: the most that many cores can give the pipeline on this
// machine, against which PipelineSeal's speed-up is read.
func ParallelSeal(suite sframe.CipherSuite, goroutines, size int) (Workload, error) {
	const ringLen = 300 // a pipeline worker's share of PipelineSeal's ring
	type sealer struct {
		s    *sframe.Sender
		ring [][]byte
	}
	ss := make([]sealer, goroutines)
	for i := range ss {
		s, err := sframe.NewSender(suite, uint64(i), make([]byte, suite.KeySize()))
		if err != nil {
			return nil, err
		}
		ss[i] = sealer{s: s, ring: make([][]byte, ringLen)}
		for j := range ss[i].ring {
			ss[i].ring[j] = make([]byte, 0, size+s.Overhead())
		}
	}
	payload := make([]byte, size)
	return func(iters int) {
		var wg sync.WaitGroup
		for i := range ss {
			n := iters / goroutines
			if i < iters%goroutines {
				n++
			}
			wg.Go(func() {
				for j := range n {
					if _, err := ss[i].s.Seal(ss[i].ring[j%ringLen][:0], metadata, payload); err != nil {
						panic(err)
					}
				}
			})
		}
		wg.Wait()
	}, nil
}
