package keyschedule

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/sframe"
)

// TestConcurrentRollover: 8 goroutines encrypt and decrypt continuously
// between two members while epochs roll 1000 times. Every object whose
// epoch is within the receiver's window when it is opened must open; every
// object whose epoch was retired before it is opened must fail with
// ErrEpochRetired (which is also sframe.ErrUnknownKID), or with
// sframe.ErrAuthentication once epoch+16 has taken its slot. Objects opened
// while their epoch is being retired may go either way. On a busy machine a
// worker can be descheduled inside one Open for more than 16 epochs (seen
// in CI), so slot reuse is accepted wherever the counters allow it.
//
// Window: the clock advances 1 s per epoch and the grace period is 3 s, so
// after installing epoch L the receiver holds L-3..L (4 < 2^E = 16 epochs:
// retirement, not slot reuse, bounds it). Objects are opened right away or
// held back 1 to 10 epochs, as in-flight MoQ objects can be.
func TestConcurrentRollover(t *testing.T) {
	const (
		rolls    = 1000
		workers  = 8
		perEpoch = 32 // seals between two installs
		grace    = 3  // epochs
	)
	clk := newFakeClock()
	g := newGroup(16)
	opts := []Option{WithClock(clk.Now), WithGracePeriod(grace * time.Second), WithRotateAfter(16)}
	type member struct {
		s      *Schedule
		latest atomic.Uint64 // newest epoch whose Install has returned
	}
	m := [2]*member{{s: mustNew(t, opts...)}, {s: mustNew(t, opts...)}}
	for i, x := range m {
		mustInstall(t, x.s, g.epoch(1, uint64(i)))
		x.latest.Store(1)
	}

	// Workers seal only with a token, and report each seal; the installer
	// hands out perEpoch tokens per epoch and installs the next epoch once
	// all are sealed. So epochs roll every perEpoch seals, and no Seal spans
	// an Install, however the scheduler treats the goroutines.
	tokens := make(chan struct{}, perEpoch)
	sealed := make(chan struct{}, perEpoch)
	stop := make(chan struct{})
	abort := make(chan struct{}) // closed on the first violation
	var (
		seals      atomic.Uint64
		done       atomic.Bool
		mu         sync.Mutex
		violations []string
		counts     struct {
			inWindowOK, retiredFail, reusedFail, edgeOK, edgeFail, deferred int
		}
	)
	violate := func(s string) {
		mu.Lock()
		if len(violations) == 0 {
			close(abort)
		}
		if len(violations) < 20 {
			violations = append(violations, s)
		}
		mu.Unlock()
	}

	type object struct {
		epoch   uint64
		release uint64 // open once the receiver's latest epoch reaches this
		md, pt  []byte
		ct      []byte
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, rx := m[w%2], m[1-w%2]
			st, err := tx.s.Stream(uint64(w / 2 * 10)) // several streams per member
			if err != nil {
				violate(err.Error())
				return
			}
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			var queue []object
			var local struct{ inWindowOK, retiredFail, reusedFail, edgeOK, edgeFail, deferred int }
			open := func(o object) bool {
				lb := rx.latest.Load()
				if o.epoch > lb { // receiver has not got the epoch yet: buffer
					return false
				}
				pt, err := rx.s.Open(nil, o.md, o.ct)
				la := rx.latest.Load()
				// During Open the receiver's newest epoch was in [lb, la+1]
				// (the counter is stored after Install returns).
				// Once epoch+16 is installed, the slot (same low E bits) holds
				// it and the object fails authentication under its key
				// (RFC 9605 §5.2 slot reuse). A worker descheduled inside
				// Open can see that even for an object live when Open began.
				reused := isErr(err, sframe.ErrAuthentication) && o.epoch+16 <= la+1
				where := fmt.Sprintf("(epoch %d, receiver latest %d before Open, %d after)", o.epoch, lb, la)
				switch {
				case o.epoch+grace >= la+1: // live throughout
					if err != nil || !bytes.Equal(pt, o.pt) {
						violate("in-window object failed: " + errString(err) + " " + where)
					}
					local.inWindowOK++
				case err == nil && o.epoch+grace >= lb: // retired during Open
					if !bytes.Equal(pt, o.pt) {
						violate("edge object: wrong plaintext " + where)
					}
					local.edgeOK++
				case isErr(err, ErrEpochRetired) && isErr(err, sframe.ErrUnknownKID):
					if o.epoch+grace >= lb {
						local.edgeFail++
					} else {
						local.retiredFail++
					}
				case reused:
					local.reusedFail++
				default:
					violate("object retired before or during Open: unexpected result " + errString(err) + " " + where)
				}
				return true
			}
			for i := uint64(0); ; i++ {
				select {
				case <-tokens:
				case <-stop:
				}
				if done.Load() {
					break
				}
				md := binary.BigEndian.AppendUint64([]byte{byte(w)}, i)
				pt := binary.BigEndian.AppendUint64(bytes.Repeat([]byte{byte(i)}, rng.IntN(200)), i)
				lo := tx.latest.Load()
				ct, err := st.Seal(nil, md, pt)
				hi := tx.latest.Load() + 1
				if err != nil {
					violate("seal: " + err.Error())
					return
				}
				seals.Add(1)
				sealed <- struct{}{}
				h, _, _ := sframe.ParseHeader(ct)
				e := lo
				for e <= hi && e%16 != h.KID%16 {
					e++
				}
				if e > hi {
					violate("sealed with an epoch outside the installed range")
					return
				}
				// Objects are opened once the receiver reaches the release
				// epoch, and at least once it has the object's epoch.
				var delay uint64
				switch r := rng.IntN(100); {
				case r < 60:
				case r < 85:
					delay = 1 + rng.Uint64N(3)
				default:
					delay = 4 + rng.Uint64N(7)
				}
				if e > rx.latest.Load() {
					local.deferred++ // sealed before the receiver had the epoch
				}
				queue = append(queue, object{epoch: e, release: max(e, lo) + delay, md: md, pt: pt, ct: ct})
				cur := rx.latest.Load()
				kept := queue[:0]
				for _, o := range queue {
					if o.release > cur || !open(o) {
						kept = append(kept, o)
					}
				}
				queue = kept
			}
			// Drain: open what is left, whatever its release time.
			for _, o := range queue {
				for !open(o) {
					runtime.Gosched()
				}
			}
			mu.Lock()
			counts.inWindowOK += local.inWindowOK
			counts.retiredFail += local.retiredFail
			counts.reusedFail += local.reusedFail
			counts.edgeOK += local.edgeOK
			counts.edgeFail += local.edgeFail
			counts.deferred += local.deferred
			mu.Unlock()
		}()
	}

	start := time.Now()
roll:
	for n := uint64(2); n <= rolls+1; n++ {
		for range perEpoch {
			tokens <- struct{}{}
		}
		for range perEpoch {
			select {
			case <-sealed:
			case <-abort: // a worker may have stopped; its tokens stay unsealed
				break roll
			}
		}
		clk.Advance(time.Second)
		// One member learns of each epoch first, alternately.
		first := int(n % 2)
		for _, i := range []int{first, 1 - first} {
			mustInstall(t, m[i].s, g.epoch(n, uint64(i)))
			m[i].latest.Store(n)
		}
	}
	done.Store(true)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	for _, v := range violations {
		t.Error(v)
	}
	total := counts.inWindowOK + counts.retiredFail + counts.reusedFail + counts.edgeOK + counts.edgeFail
	t.Logf("%d rolls in %v: %d seals, %d opens: %d in-window opened (0 failed), %d retired refused with ErrEpochRetired, %d older than 16 epochs refused with ErrAuthentication (slot reused), %d at the retirement edge opened, %d at the edge refused; %d objects sealed before the receiver had their epoch (buffered, then opened)",
		rolls, elapsed.Round(time.Millisecond), seals.Load(), total, counts.inWindowOK, counts.retiredFail, counts.reusedFail, counts.edgeOK, counts.edgeFail, counts.deferred)
	for i, x := range m {
		st := x.s.Status()
		t.Logf("member %d: installs %d retired %d evicted %d rotations %d hard-limit hits %d live %v", i, st.Installs, st.Retired, st.Evicted, st.Rotations, st.HardLimitHits, st.Live)
		if st.HardLimitHits != 0 || st.Evicted != 0 || st.Installs != rolls+1 {
			t.Errorf("member %d: %+v", i, st)
		}
	}
	if counts.inWindowOK == 0 || counts.retiredFail == 0 || uint64(total) != seals.Load() {
		t.Errorf("counts %+v, seals %d", counts, seals.Load())
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
