package keyschedule

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/moqsframe/moqsframe/sframe"
)

// The pipeline's sealer and opener shapes.
var (
	_ interface {
		Seal(dst, metadata, plaintext []byte) ([]byte, error)
	} = (*Schedule)(nil)
	_ interface {
		Seal(dst, metadata, plaintext []byte) ([]byte, error)
	} = (*Stream)(nil)
	_ interface {
		Open(dst, metadata, ciphertext []byte) ([]byte, error)
	} = (*Schedule)(nil)
)

func TestRoundTripAndErrors(t *testing.T) {
	g := newGroup(5)
	a, b := mustNew(t), mustNew(t)
	md := []byte("md")
	if _, err := a.Seal(nil, md, []byte("x")); !isErr(err, ErrNoEpoch) {
		t.Fatalf("seal before install: %v", err)
	}
	junk := sframe.AppendHeader(nil, 0x13, 0)
	junk = append(junk, make([]byte, 16)...)
	if _, err := b.Open(nil, md, junk); !isErr(err, ErrUnknownEpoch) || !isErr(err, sframe.ErrUnknownKID) {
		t.Fatalf("open before install: %v", err)
	}
	mustInstall(t, a, g.epoch(7, 1))
	mustInstall(t, b, g.epoch(7, 4))
	ct, err := a.Seal(nil, md, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if kid := kidOf(t, ct); kid != 1<<4|7 {
		t.Fatalf("KID %#x", kid)
	}
	pt, err := b.Open(nil, md, ct)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := b.Open(nil, md, ct); !isErr(err, sframe.ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := b.Open(nil, []byte("other"), ct); !isErr(err, sframe.ErrAuthentication) {
		t.Fatalf("metadata change: %v", err)
	}
	// A member never decrypts with its own KIDs (RFC 9605 §4.4.1).
	if _, err := a.Open(nil, md, ct); !isErr(err, sframe.ErrUnknownKID) {
		t.Fatalf("own KID: %v", err)
	}
	// Index outside the group (S=3, index 6 >= 5) and context above the maximum.
	for _, kid := range []uint64{6<<4 | 7, 256<<7 | 1<<4 | 7} {
		forged := append(sframe.AppendHeader(nil, kid, 0), make([]byte, 32)...)
		if _, err := b.Open(nil, md, forged); !isErr(err, sframe.ErrUnknownKID) {
			t.Fatalf("KID %#x: %v", kid, err)
		}
	}
	if _, err := b.Open(nil, md, []byte{0xff}); !isErr(err, sframe.ErrMalformedHeader) {
		t.Fatalf("malformed: %v", err)
	}

	// Ordering and validation.
	if err := a.Install(g.epoch(7, 1)); !isErr(err, ErrStaleEpoch) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := a.Install(g.epoch(3, 1)); !isErr(err, ErrStaleEpoch) {
		t.Fatalf("older: %v", err)
	}
	bad := []Epoch{
		{Number: 8, BaseKey: make([]byte, 15), GroupSize: 5, Index: 1},
		{Number: 8, BaseKey: make([]byte, 16), GroupSize: 0, Index: 0},
		{Number: 8, BaseKey: make([]byte, 16), GroupSize: 5, Index: 5},
		{Number: 8, BaseKey: make([]byte, 16), GroupSize: 5, Index: 1, Members: 6},
		{Number: 8, BaseKey: nil, GroupSize: 5, Index: 1},
	}
	for i, e := range bad {
		if err := a.Install(e); !isErr(err, ErrInvalidEpoch) {
			t.Fatalf("bad epoch %d: %v", i, err)
		}
	}
	if _, err := a.Stream(DefaultMaxContext + 1); !isErr(err, ErrContextRange) {
		t.Fatalf("stream context: %v", err)
	}
	if _, err := New(sframe.CipherSuite(99)); !isErr(err, sframe.ErrUnsupportedSuite) {
		t.Fatalf("suite: %v", err)
	}
	for i, o := range []Option{WithEpochBits(9), WithGracePeriod(-1), WithRotateAfter(0), WithRotateAfterBlocks(0), WithClock(nil), WithCoordinatedRollover(nil, time.Second), WithCoordinatedRollover(QuorumAll(), 0)} {
		if _, err := New(testSuite, o); !isErr(err, ErrInvalidConfig) {
			t.Fatalf("option %d: %v", i, err)
		}
	}
}

// TestNoSecretsInErrors checks that error strings carry no key bytes.
func TestNoSecretsInErrors(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 15)
	s := mustNew(t)
	err := s.Install(Epoch{Number: 1, BaseKey: key, GroupSize: 2})
	if err == nil || strings.Contains(strings.ToLower(err.Error()), "abab") || strings.Contains(err.Error(), string(key)) {
		t.Fatalf("error %q", err)
	}
}

func TestGracePeriodRetirement(t *testing.T) {
	clk := newFakeClock()
	g := newGroup(4)
	a := mustNew(t, WithClock(clk.Now), WithGracePeriod(5*time.Second))
	b := mustNew(t, WithClock(clk.Now), WithGracePeriod(5*time.Second))
	md := []byte("md")
	mustInstall(t, b, g.epoch(1, 1))
	mustInstall(t, a, g.epoch(1, 0))
	old1, _ := a.Seal(nil, md, []byte("e1-a"))
	old2, _ := a.Seal(nil, md, []byte("e1-b"))
	clk.Advance(time.Second)
	mustInstall(t, b, g.epoch(2, 1))
	mustInstall(t, a, g.epoch(2, 0))
	n2, _ := a.Seal(nil, md, []byte("e2"))
	if kidOf(t, n2)&15 != 2 {
		t.Fatalf("not switched to epoch 2")
	}
	// Within the grace period the old epoch still opens.
	clk.Advance(4 * time.Second)
	b.Tick()
	if _, err := b.Open(nil, md, old1); err != nil {
		t.Fatalf("within grace: %v", err)
	}
	if got := b.Status().Live; len(got) != 2 {
		t.Fatalf("live %v", got)
	}
	clk.Advance(time.Second) // 5 s after epoch 2 superseded epoch 1
	b.Tick()
	if _, err := b.Open(nil, md, old2); !isErr(err, ErrEpochRetired) || !isErr(err, sframe.ErrUnknownKID) {
		t.Fatalf("after grace: %v", err)
	}
	if _, err := b.Open(nil, md, n2); err != nil {
		t.Fatalf("current epoch: %v", err)
	}
	st := b.Status()
	if st.Retired != 1 || len(st.Live) != 1 || st.Live[0] != 2 || st.OpenRetiredRefused != 1 {
		t.Fatalf("status %+v", st)
	}
	// The newest epoch is never retired, however old.
	clk.Advance(time.Hour)
	b.Tick()
	if _, err := b.Open(nil, md, n2); !isErr(err, sframe.ErrReplay) {
		t.Fatalf("newest epoch after an hour: %v", err)
	}
}

// TestSlotReuseEvicts checks the MUST of RFC 9605 §5.2: a new epoch with
// the same low E bits removes the old one, even within its grace period.
func TestSlotReuseEvicts(t *testing.T) {
	g := newGroup(2)
	a := mustNew(t, WithEpochBits(2), WithGracePeriod(time.Hour))
	b := mustNew(t, WithEpochBits(2), WithGracePeriod(time.Hour))
	md := []byte("md")
	var cts [][]byte
	for n := uint64(1); n <= 4; n++ {
		mustInstall(t, b, g.epoch(n, 1))
		mustInstall(t, a, g.epoch(n, 0))
		ct, _ := a.Seal(nil, md, []byte{byte(n)})
		cts = append(cts, ct)
	}
	if live := b.Status().Live; fmt.Sprint(live) != "[1 2 3 4]" {
		t.Fatalf("live %v", live)
	}
	if _, err := b.Open(nil, md, cts[0]); err != nil {
		t.Fatal(err)
	}
	ct1b, _ := a.Seal(nil, md, []byte("epoch 4 again"))
	_ = ct1b
	mustInstall(t, b, g.epoch(5, 1)) // 5 mod 4 == 1: epoch 1 goes
	if live := b.Status().Live; fmt.Sprint(live) != "[2 3 4 5]" {
		t.Fatalf("live %v", live)
	}
	// An epoch-1 object now resolves to epoch 5 and cannot authenticate.
	mustInstall(t, a, g.epoch(5, 0))
	late, _ := sealWithEpoch(t, g, 1, 0, md, []byte("late"))
	if _, err := b.Open(nil, md, late); !isErr(err, sframe.ErrAuthentication) {
		t.Fatalf("evicted epoch: %v", err)
	}
	for i := 1; i < 4; i++ {
		if _, err := b.Open(nil, md, cts[i]); err != nil {
			t.Fatalf("epoch %d: %v", i+1, err)
		}
	}
	if st := b.Status(); st.Evicted != 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestForgeryIsNotReplay: the replay window judges only ciphertexts that
// authenticate. Under a KID whose counter 0 was accepted, a forgery with
// counter 0 and a late object of the epoch whose slot that KID's epoch
// took (RFC 9605 §5.2: same KID, same counter, the evicted epoch's key)
// both fail with sframe.ErrAuthentication and are counted as
// authentication failures, not replays; a genuine replay gets ErrReplay.
func TestForgeryIsNotReplay(t *testing.T) {
	g := newGroup(2)
	a := mustNew(t, WithEpochBits(2), WithGracePeriod(time.Hour))
	b := mustNew(t, WithEpochBits(2), WithGracePeriod(time.Hour))
	md := []byte("md")
	mustInstall(t, b, g.epoch(1, 1))
	mustInstall(t, a, g.epoch(1, 0))
	late, err := a.Seal(nil, md, []byte("epoch 1"))
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(2); n <= 5; n++ { // 5 mod 4 == 1: epoch 5 takes epoch 1's slot
		mustInstall(t, b, g.epoch(n, 1))
		mustInstall(t, a, g.epoch(n, 0))
	}
	ct, err := a.Seal(nil, md, []byte("epoch 5"))
	if err != nil {
		t.Fatal(err)
	}
	hl, _, _ := sframe.ParseHeader(late)
	hc, _, _ := sframe.ParseHeader(ct)
	if hl != hc || b.Status().Evicted != 1 {
		t.Fatalf("headers %+v and %+v, status %+v; want equal headers and epoch 1 evicted", hl, hc, b.Status())
	}
	forged := bytes.Clone(ct)
	forged[len(forged)-1] ^= 1
	rx := b.snap.Load().slots[5&b.mask].ep.rx
	for _, tc := range []struct {
		name string
		in   []byte
		want error
		st   sframe.ReceiverStats
	}{
		{"genuine", ct, nil, sframe.ReceiverStats{Opened: 1}},
		{"forged, seen counter", forged, sframe.ErrAuthentication, sframe.ReceiverStats{Opened: 1, AuthFailed: 1}},
		{"evicted epoch, seen counter", late, sframe.ErrAuthentication, sframe.ReceiverStats{Opened: 1, AuthFailed: 2}},
		{"replay", ct, sframe.ErrReplay, sframe.ReceiverStats{Opened: 1, AuthFailed: 2, Replayed: 1}},
	} {
		_, err := b.Open(nil, md, tc.in)
		if tc.want == nil && err != nil || tc.want != nil && !isErr(err, tc.want) ||
			tc.want != sframe.ErrReplay && isErr(err, sframe.ErrReplay) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if st := rx.Stats(); st != tc.st {
			t.Errorf("%s: receiver stats %+v, want %+v", tc.name, st, tc.st)
		}
	}
}

// sealWithEpoch seals one object as member index in epoch n on a fresh
// schedule (used to produce late objects of an old epoch).
func sealWithEpoch(t *testing.T, g *group, n, index uint64, md, pt []byte, opts ...Option) ([]byte, *Schedule) {
	t.Helper()
	s := mustNew(t, opts...)
	mustInstall(t, s, g.epoch(n, index))
	ct, err := s.Seal(nil, md, pt)
	if err != nil {
		t.Fatal(err)
	}
	return ct, s
}

func TestUsageRotation(t *testing.T) {
	g := newGroup(4)
	var reqs []RekeyRequest
	var mu sync.Mutex
	a := mustNew(t, WithRotateAfter(3), WithRekeyHandler(func(r RekeyRequest) { mu.Lock(); reqs = append(reqs, r); mu.Unlock() }))
	b := mustNew(t)
	mustInstall(t, a, g.epoch(1, 2))
	mustInstall(t, b, g.epoch(1, 3))
	side, err := a.Stream(1) // reserves context 1: rotation skips it
	if err != nil {
		t.Fatal(err)
	}
	l, _ := NewLayout(4, DefaultEpochBits)
	var ctxs []uint64
	md := []byte("md")
	for i := range 10 {
		ct, err := a.Seal(nil, md, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		c, idx, low := l.Split(kidOf(t, ct))
		if idx != 2 || low != 1 {
			t.Fatalf("KID fields %d %d", idx, low)
		}
		h, _, _ := sframe.ParseHeader(ct)
		if h.CTR >= 3 {
			t.Fatalf("CTR %d past the budget", h.CTR)
		}
		ctxs = append(ctxs, c)
		if pt, err := b.Open(nil, md, ct); err != nil || pt[0] != byte(i) {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	if got := fmt.Sprint(ctxs); got != "[0 0 0 2 2 2 3 3 3 4]" {
		t.Fatalf("contexts %s", got)
	}
	ct, _ := side.Seal(nil, md, []byte("side"))
	if c, _, _ := l.Split(kidOf(t, ct)); c != 1 {
		t.Fatalf("side stream context %d", c)
	}
	if _, err := b.Open(nil, md, ct); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(reqs) != 1 || reqs[0] != (RekeyRequest{Epoch: 1, Reason: RekeyUsage}) {
		t.Fatalf("rekey requests %v", reqs)
	}
	mu.Unlock()
	if st := a.Status(); st.Rotations != 3 || st.HardLimitHits != 0 {
		t.Fatalf("status %+v", st)
	}
	// A new epoch starts again from the base context.
	mustInstall(t, a, g.epoch(2, 2))
	ct, _ = a.Seal(nil, md, nil)
	if c, _, low := l.Split(kidOf(t, ct)); c != 0 || low != 2 {
		t.Fatalf("after new epoch: context %d epoch %d", c, low)
	}
}

func TestBlockBudget(t *testing.T) {
	g := newGroup(2)
	a := mustNew(t, WithRotateAfterBlocks(10))
	mustInstall(t, a, g.epoch(1, 0))
	l, _ := NewLayout(2, 4)
	pt := make([]byte, 100) // 7+1 blocks: one object per key
	for i := range 3 {
		ct, err := a.Seal(nil, nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		if c, _, _ := l.Split(kidOf(t, ct)); c != uint64(i) {
			t.Fatalf("object %d on context %d", i, c)
		}
	}
	if _, err := a.Seal(nil, nil, make([]byte, 200)); !isErr(err, ErrObjectTooLarge) {
		t.Fatalf("too large: %v", err)
	}
}

func TestContextExhaustion(t *testing.T) {
	g := newGroup(2)
	var reqs []RekeyRequest
	a := mustNew(t, WithRotateAfter(1), WithMaxContext(2), WithRekeyHandler(func(r RekeyRequest) { reqs = append(reqs, r) }))
	mustInstall(t, a, g.epoch(1, 0))
	for range 3 {
		if _, err := a.Seal(nil, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := a.Seal(nil, nil, nil); !isErr(err, ErrContextExhausted) {
			t.Fatalf("exhausted: %v", err)
		}
	}
	if fmt.Sprint(reqs) != fmt.Sprint([]RekeyRequest{{1, RekeyUsage}, {1, RekeyContextsExhausted}}) {
		t.Fatalf("requests %v", reqs)
	}
	mustInstall(t, a, g.epoch(2, 0))
	if _, err := a.Seal(nil, nil, nil); err != nil {
		t.Fatalf("after new epoch: %v", err)
	}
	// A layout with no room for context: S+E = 64.
	s := mustNew(t)
	mustInstall(t, s, Epoch{Number: 1, BaseKey: make([]byte, 16), GroupSize: 1 << 60, Index: 5})
	st, _ := s.Stream(1)
	if _, err := st.Seal(nil, nil, nil); !isErr(err, ErrContextRange) {
		t.Fatalf("context in a full layout: %v", err)
	}
	if ct, err := s.Seal(nil, nil, nil); err != nil || kidOf(t, ct) != 5<<4|1 {
		t.Fatalf("context 0 in a full layout: %v", err)
	}
}

// TestSharedContext checks that two streams on one context share a counter.
func TestSharedContext(t *testing.T) {
	g := newGroup(2)
	a := mustNew(t)
	mustInstall(t, a, g.epoch(1, 0))
	s1, _ := a.Stream(3)
	s2, _ := a.Stream(3)
	seen := map[uint64]bool{}
	for range 5 {
		for _, s := range []*Stream{s1, s2} {
			ct, _ := s.Seal(nil, nil, nil)
			h, _, _ := sframe.ParseHeader(ct)
			if seen[h.CTR] {
				t.Fatalf("CTR %d reused on KID %#x", h.CTR, h.KID)
			}
			seen[h.CTR] = true
		}
	}
}

func TestCoordinatedQuorum(t *testing.T) {
	clk := newFakeClock()
	g := newGroup(5)
	opts := []Option{WithClock(clk.Now), WithCoordinatedRollover(QuorumMajority(), 2*time.Second), WithGracePeriod(time.Second)}
	a := mustNew(t, opts...)
	b := mustNew(t, WithClock(clk.Now))
	md := []byte("md")
	epochOf := func(s *Schedule) uint64 {
		ct, err := s.Seal(nil, md, nil)
		if err != nil {
			t.Fatal(err)
		}
		return kidOf(t, ct) & 15
	}
	mustInstall(t, a, g.epoch(1, 0))
	if epochOf(a) != 1 {
		t.Fatal("first epoch not used at once")
	}
	mustInstall(t, a, g.epoch(2, 0))
	mustInstall(t, b, g.epoch(2, 1))
	if epochOf(a) != 1 {
		t.Fatal("switched before quorum")
	}
	// Decryption keys of the pending epoch work at once.
	ctB, _ := b.Seal(nil, md, []byte("from b"))
	if _, err := a.Open(nil, md, ctB); err != nil {
		t.Fatalf("open pending epoch: %v", err)
	}
	st := a.Status()
	if !st.Pending || st.PendingEpoch != 2 || st.Acks != 1 || st.Quorum != 3 || st.Send != 1 {
		t.Fatalf("status %+v", st)
	}
	if err := a.Acknowledge(2, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Acknowledge(2, 1); err != nil { // duplicate
		t.Fatal(err)
	}
	if err := a.Acknowledge(2, 5); !isErr(err, ErrInvalidMember) {
		t.Fatalf("bad member: %v", err)
	}
	if err := a.Acknowledge(1, 4); err != nil { // stale: ignored
		t.Fatal(err)
	}
	if epochOf(a) != 1 {
		t.Fatal("switched with 2 of 3")
	}
	if err := a.Acknowledge(2, 3); err != nil {
		t.Fatal(err)
	}
	if epochOf(a) != 2 {
		t.Fatal("not switched at quorum")
	}
	// Early acknowledgements: members ahead of us.
	for _, m := range []uint64{1, 2} {
		if err := a.Acknowledge(3, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Acknowledge(3+100, 1); !isErr(err, ErrAckOverflow) {
		t.Fatalf("far future ack: %v", err)
	}
	mustInstall(t, a, g.epoch(3, 0))
	if epochOf(a) != 3 {
		t.Fatal("early acks not applied")
	}
	st = a.Status()
	if st.PromotedQuorum != 2 || st.PromotedTimeout != 0 || st.Pending {
		t.Fatalf("status %+v", st)
	}
	// Retirement waits grace + timeout in coordinated mode: 3 s.
	clk.Advance(2500 * time.Millisecond)
	a.Tick()
	if fmt.Sprint(a.Status().Live) != "[1 2 3]" {
		t.Fatalf("live %v", a.Status().Live)
	}
	clk.Advance(500 * time.Millisecond)
	a.Tick()
	if fmt.Sprint(a.Status().Live) != "[3]" {
		t.Fatalf("live %v", a.Status().Live)
	}
}

func TestCoordinatedTimeout(t *testing.T) {
	clk := newFakeClock()
	g := newGroup(3)
	a := mustNew(t, WithClock(clk.Now), WithCoordinatedRollover(QuorumAll(), 2*time.Second))
	epochOf := func() uint64 {
		ct, err := a.Seal(nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return kidOf(t, ct) & 15
	}
	mustInstall(t, a, g.epoch(1, 0))
	mustInstall(t, a, g.epoch(2, 0))
	clk.Advance(1500 * time.Millisecond)
	// A burst of commits does not restart the timeout.
	mustInstall(t, a, g.epoch(3, 0))
	if epochOf() != 1 {
		t.Fatal("switched early")
	}
	clk.Advance(499 * time.Millisecond)
	if epochOf() != 1 {
		t.Fatal("switched early")
	}
	clk.Advance(time.Millisecond)
	if e := epochOf(); e != 3 { // Seal itself applies the timeout
		t.Fatalf("after timeout: epoch %d", e)
	}
	// Tick applies it too.
	mustInstall(t, a, g.epoch(4, 0))
	clk.Advance(2 * time.Second)
	a.Tick()
	if st := a.Status(); st.Send != 4 || st.PromotedTimeout != 2 {
		t.Fatalf("status %+v", st)
	}
}

// TestCoordinatedForced: when the send epoch's slot is taken by a new
// epoch, the receivers have dropped it, so the sender switches at once.
func TestCoordinatedForced(t *testing.T) {
	g := newGroup(3)
	// E=2: epoch 5 would take epoch 1's slot. Receivers may be one epoch
	// ahead, so the sender leaves epoch 1 when epoch 4 arrives.
	a := mustNew(t, WithEpochBits(2), WithCoordinatedRollover(QuorumAll(), time.Hour))
	mustInstall(t, a, g.epoch(1, 0))
	mustInstall(t, a, g.epoch(2, 0))
	mustInstall(t, a, g.epoch(3, 0))
	if st := a.Status(); st.Send != 1 {
		t.Fatalf("%+v", st)
	}
	mustInstall(t, a, g.epoch(4, 0))
	if st := a.Status(); st.Send != 4 || st.PromotedForced != 1 || st.Pending {
		t.Fatalf("%+v", st)
	}
}

// An Immediate epoch (it removed members) is sent with at once, without
// waiting for the quorum.
func TestCoordinatedImmediate(t *testing.T) {
	g := newGroup(3)
	a := mustNew(t, WithCoordinatedRollover(QuorumAll(), time.Hour))
	mustInstall(t, a, g.epoch(1, 0))
	mustInstall(t, a, g.epoch(2, 0))
	if st := a.Status(); st.Send != 1 || !st.Pending {
		t.Fatalf("%+v", st)
	}
	e := g.epoch(3, 0)
	e.Immediate = true
	mustInstall(t, a, e)
	if st := a.Status(); st.Send != 3 || st.Pending || st.PromotedForced != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestQuorums(t *testing.T) {
	for _, c := range []struct {
		q    Quorum
		n, k int
	}{{QuorumAll(), 5, 5}, {QuorumMajority(), 5, 3}, {QuorumMajority(), 4, 3}, {QuorumAtLeast(2), 5, 2}, {QuorumAtLeast(9), 5, 5}, {QuorumFraction(2, 3), 5, 4}, {QuorumFraction(1, 0), 5, 5}} {
		if got := c.q(c.n); got != c.k {
			t.Errorf("quorum of %d: %d, want %d", c.n, got, c.k)
		}
	}
	// A group of one switches at once even with QuorumAll.
	g := newGroup(1)
	a := mustNew(t, WithCoordinatedRollover(QuorumAll(), time.Hour))
	mustInstall(t, a, g.epoch(1, 0))
	mustInstall(t, a, g.epoch(2, 0))
	if st := a.Status(); st.Send != 2 {
		t.Fatalf("%+v", st)
	}
	// Acknowledge is a no-op without coordinated mode.
	if err := mustNew(t).Acknowledge(1, 99); err != nil {
		t.Fatal(err)
	}
}

func FuzzOpen(f *testing.F) {
	g := newGroup(64)
	a, b := mustNew(f), mustNew(f)
	mustInstall(f, a, g.epoch(14, 3))
	mustInstall(f, b, g.epoch(14, 20))
	ct, _ := a.Seal(nil, []byte("md"), []byte("seed"))
	f.Add(ct)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff})
	f.Add(append(sframe.AppendHeader(nil, 0xc20, 9), make([]byte, 20)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		pt, err := b.Open(nil, []byte("md"), data)
		if err == nil && !bytes.Equal(pt, []byte("seed")) {
			t.Fatalf("forged plaintext %x", pt)
		}
	})
}

// TestSendKeyPadding: a sendKey fills its 128-byte size class exactly, so
// two streams' counters never share a cache line.
func TestSendKeyPadding(t *testing.T) {
	if n := unsafe.Sizeof(sendKey{}); n != 128 {
		t.Fatalf("sizeof(sendKey) = %d, want 128: adjust the padding", n)
	}
}
