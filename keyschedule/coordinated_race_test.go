package keyschedule

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/sframe"
)

// TestConcurrentCoordinated checks coordinated roll-over under concurrency.
// Member 0 (coordinated, majority of 5) seals on 4 goroutines and member 1
// opens each object at once, while epochs 2..301 are installed, receiver
// first, and 3 goroutines acknowledge each epoch for members 1..3. Acks are
// withheld for epochs 101..120. It proves that
//
//   - every object opens, whichever epoch the sender is on: the newest,
//     the one before while the newest awaits its quorum, or, without acks,
//     up to 2^E-2 epochs behind the receiver's newest (2^E-1 in the round
//     of the forced switch);
//   - Seal switches by quorum within the round of each acknowledged epoch,
//     whether the acks come before the Install (kept and applied by it) or
//     after;
//   - without acks, Seal switches by force exactly when the newest epoch is
//     2^E-1 ahead (epoch 115, 15 after 100), and never by timeout;
//   - Seal, Open, Install and Acknowledge race without data races (-race).
//
// The epochs roll in lockstep rounds: in round n the installs of epoch n,
// the acks for it and 16 seals per sealer run concurrently, and the round
// ends when all are done. So no Seal and Open span the installs of two
// epochs, and every outcome is fixed whatever the scheduling. (An object in
// flight across 2^E installs rightly fails: its epoch's slot is reused, RFC
// 9605 §5.2; see TestSlotReuseEvicts and TestForgeryIsNotReplay.) The clock
// is fake and never moves, so the timeout cannot fire.
func TestConcurrentCoordinated(t *testing.T) {
	const (
		rolls        = 300
		sealers      = 4
		perRound     = 16 // seals per sealer per epoch
		holdFrom     = 101
		holdTo       = 120 // acks for holdFrom..holdTo are withheld
		forcedAt     = holdFrom - 1 + 1<<DefaultEpochBits - 1
		acked        = rolls - (holdTo - holdFrom + 1)
		maxSendLag   = 1<<DefaultEpochBits - 1
		firstEpoch   = 1
		lastEpoch    = firstEpoch + rolls
		ackers       = 3
		participants = sealers + ackers
	)
	clk := newFakeClock()
	g := newGroup(5)
	a := mustNew(t, WithClock(clk.Now), WithCoordinatedRollover(QuorumMajority(), time.Hour), WithGracePeriod(time.Hour))
	b := mustNew(t, WithClock(clk.Now), WithGracePeriod(time.Hour))
	mustInstall(t, b, g.epoch(firstEpoch, 1))
	mustInstall(t, a, g.epoch(firstEpoch, 0))

	var errMu sync.Mutex
	var errs []string
	fail := func(format string, args ...any) {
		errMu.Lock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
		errMu.Unlock()
	}
	var opened atomic.Int64
	var lagSeen [maxSendLag + 1]atomic.Int64 // objects by round minus epoch sealed with

	var round sync.WaitGroup
	start := make([]chan uint64, participants)
	for i := range start {
		start[i] = make(chan uint64)
	}
	var workers sync.WaitGroup
	for w := range sealers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for n := range start[w] {
				for i := range perRound {
					md := binary.BigEndian.AppendUint64([]byte{byte(w)}, n<<8|uint64(i))
					ct, err := a.Seal(nil, md, md)
					if err != nil {
						fail("round %d: seal: %v", n, err)
						continue
					}
					h, _, err := sframe.ParseHeader(ct)
					if err != nil {
						fail("round %d: %v", n, err)
						continue
					}
					// The epoch is the one in n-15..n with the KID's low bits.
					lag := (n - h.KID) & a.mask
					if lag > maxSendLag-1 && n != forcedAt { // 15 only if sealed just before the forced switch
						fail("round %d: sealed with epoch %d", n, n-lag)
					}
					lagSeen[lag].Add(1)
					if pt, err := b.Open(nil, md, ct); err != nil || !bytes.Equal(pt, md) {
						fail("round %d: open (epoch %d): %v", n, n-lag, err)
						continue
					}
					opened.Add(1)
				}
				round.Done()
			}
		}()
	}
	for m := uint64(1); m <= ackers; m++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for n := range start[sealers+int(m)-1] {
				if n < holdFrom || n > holdTo {
					if err := a.Acknowledge(n, m); err != nil {
						fail("round %d: ack %d: %v", n, m, err)
					}
				}
				round.Done()
			}
		}()
	}

	for n := uint64(firstEpoch + 1); n <= lastEpoch; n++ {
		round.Add(participants)
		for _, c := range start {
			c <- n
		}
		mustInstall(t, b, g.epoch(n, 1))
		mustInstall(t, a, g.epoch(n, 0))
		round.Wait()
		want := n
		switch {
		case n >= holdFrom && n < forcedAt:
			want = holdFrom - 1
		case n >= forcedAt && n <= holdTo:
			want = forcedAt
		}
		if st := a.Status(); st.Send != want {
			t.Errorf("after round %d: send epoch %d, want %d", n, st.Send, want)
			break
		}
	}
	for _, c := range start {
		close(c)
	}
	workers.Wait()

	for _, e := range errs {
		t.Error(e)
	}
	st := a.Status()
	var lags []int64
	for i := range lagSeen {
		lags = append(lags, lagSeen[i].Load())
	}
	t.Logf("%d objects opened; by send lag 0..15: %v; switches by quorum %d, timeout %d, forced %d",
		opened.Load(), lags, st.PromotedQuorum, st.PromotedTimeout, st.PromotedForced)
	if opened.Load() != rolls*sealers*perRound {
		t.Errorf("%d objects opened, want %d", opened.Load(), rolls*sealers*perRound)
	}
	// In the round before the forced switch the sender is 14 epochs behind
	// throughout; in the forced round it may be 15 until the switch.
	if lags[maxSendLag-1] != sealers*perRound {
		t.Errorf("%d objects sealed 14 epochs behind, want %d", lags[maxSendLag-1], sealers*perRound)
	}
	if st.PromotedQuorum != acked || st.PromotedForced != 1 || st.PromotedTimeout != 0 ||
		st.Send != lastEpoch || st.Latest != lastEpoch || st.Pending {
		t.Errorf("status %+v; want %d switches by quorum, 1 forced, send epoch %d", st, acked, lastEpoch)
	}
}
