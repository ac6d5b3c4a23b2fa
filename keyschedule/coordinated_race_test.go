package keyschedule

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentCoordinated: in coordinated mode, 4 goroutines seal on
// member 0 and open on member 1 while epochs roll 300 times and other
// goroutines acknowledge each epoch for members 1..4 concurrently. The
// receiver installs each epoch before the sender and keeps every epoch
// (long grace), so every object must open, whichever epoch the sender was
// on.
func TestConcurrentCoordinated(t *testing.T) {
	const rolls = 300
	g := newGroup(5)
	a := mustNew(t, WithCoordinatedRollover(QuorumMajority(), time.Hour), WithGracePeriod(time.Hour))
	// The 4 sealers share one counter; a goroutine descheduled (the race
	// detector makes that long) can fall more than sframe's default 1024
	// counters behind, which the replay window rightly rejects as too old.
	// That is reordering, not the key schedule: widen the window.
	b := mustNew(t, WithGracePeriod(time.Hour), WithReplayWindow(1<<16))
	mustInstall(t, b, g.epoch(1, 1))
	mustInstall(t, a, g.epoch(1, 0))
	var done atomic.Bool
	var fails, opened atomic.Int64
	var errMu sync.Mutex
	errs := map[string]int{}
	fail := func(where string, err error) {
		fails.Add(1)
		errMu.Lock()
		errs[where+": "+errString(err)]++
		errMu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); !done.Load(); i++ {
				md := binary.BigEndian.AppendUint64([]byte{byte(w)}, i)
				ct, err := a.Seal(nil, md, md)
				if err != nil {
					fail("seal", err)
					continue
				}
				if pt, err := b.Open(nil, md, ct); err != nil || !bytes.Equal(pt, md) {
					fail("open", err)
					continue
				}
				opened.Add(1)
			}
		}()
	}
	acks := make(chan uint64, rolls)
	for m := uint64(1); m <= 4; m++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range acks {
				if m == 4 { // member 4 is slow: it never makes the quorum
					continue
				}
				if err := a.Acknowledge(e, m); err != nil {
					fail("ack", err)
				}
			}
		}()
	}
	for n := uint64(2); n <= rolls+1; n++ {
		mustInstall(t, b, g.epoch(n, 1))
		mustInstall(t, a, g.epoch(n, 0))
		for range 3 { // one send per acking goroutine, in any order
			acks <- n
		}
		time.Sleep(time.Millisecond)
	}
	close(acks)
	time.Sleep(time.Millisecond)
	done.Store(true)
	wg.Wait()
	st := a.Status()
	t.Logf("%d objects opened, %d failures; switches by quorum %d, timeout %d, forced %d; send epoch %d of %d",
		opened.Load(), fails.Load(), st.PromotedQuorum, st.PromotedTimeout, st.PromotedForced, st.Send, st.Latest)
	for e, n := range errs {
		t.Logf("%d x %s", n, e)
	}
	if fails.Load() != 0 || opened.Load() == 0 || st.PromotedQuorum == 0 || st.PromotedTimeout != 0 {
		t.Fatalf("status %+v", st)
	}
}
