package group

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/internal/testpki"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// Table tests of the core: real (in-process) MLS members, a fake CS that
// answers the core's requests the way the real one does, explicit times.
// No relay, no HTTP, no goroutines, no sleeping.

var t0 = time.Unix(1_700_000_000, 0)

// testPKI is the deployment CA of every member in this package's tests.
var testPKI = testpki.New()

// tc is one member's core under test.
type tc struct {
	t       *testing.T
	id      string
	c       *core
	mls     *mlsgroup.Member
	now     time.Time
	rosters []Event // EventRoster events, in order
}

func newTC(t *testing.T, id string, mod func(*Config)) *tc {
	t.Helper()
	cl, err := coord.NewClient("https://cs.invalid", nil) // never used: the core does no I/O
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Certificate: testPKI.Issue(t, id), Verifier: testPKI.Verifier, Group: "g", CS: cl, Manual: true}
	if mod != nil {
		mod(&cfg)
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m, err := mlsgroup.NewMember(cfg.Certificate, mlsgroup.Authenticator{Verifier: cfg.Verifier, Policy: cfg.Policy}, cfg.Group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &tc{t: t, id: id, c: newCore(cfg, id, m, testLogger()), mls: m, now: t0}
}

// step runs the core. Roster events are taken out of the actions and
// kept in x.rosters: they follow every membership change, and tests that
// are not about them need not list them.
func (x *tc) step(ins ...input) []action {
	acts := x.c.step(x.now, ins...)
	out := acts[:0:0]
	for _, a := range acts {
		if e, ok := a.(actEmit); ok && e.Event.Type == EventRoster {
			x.rosters = append(x.rosters, e.Event)
			continue
		}
		out = append(out, a)
	}
	return out
}

func (x *tc) key() mlsgroup.KeyState {
	x.t.Helper()
	ks, err := x.mls.KeyState(context.Background(), 16)
	if err != nil {
		x.t.Fatalf("%s: %v", x.id, err)
	}
	return ks
}

// fakeCS decides requests and commits like coord's server and keeps the
// archive; deliver plays the role of MoQ.
type fakeCS struct {
	t        *testing.T
	exists   bool
	epoch    uint64
	requests [][]byte
	commits  map[uint64][]byte
	welcomes map[uint64][]byte
	// liveness answers actFetchLiveness (nil: 503); retireOK: a retire
	// request for the current epoch retires the group (else 409).
	liveness *coord.LivenessReport
	retireOK bool
	retired  int
}

func newFakeCS(t *testing.T) *fakeCS {
	return &fakeCS{t: t, commits: map[uint64][]byte{}, welcomes: map[uint64][]byte{}}
}

func (cs *fakeCS) request(typ wire.RequestType, body []byte) {
	r := wire.Request{GroupID: []byte("g"), Type: typ, Body: body}
	enc, err := r.Marshal()
	if err != nil {
		cs.t.Fatal(err)
	}
	cs.requests = append(cs.requests, enc)
}

// answer carries out one action like the driver and returns the input
// answering it (nil if none).
func (cs *fakeCS) answer(a action) input {
	switch a := a.(type) {
	case actFetchState:
		if !cs.exists {
			return inState{Purpose: a.Purpose, Err: coord.ErrUnknownGroup}
		}
		return inState{Purpose: a.Purpose, Epoch: cs.epoch, NextSeq: uint64(len(cs.requests))}
	case actFetch:
		var d []byte
		switch a.Track {
		case trackCommit:
			d = cs.commits[a.Num]
		case trackWelcome:
			d = cs.welcomes[a.Num]
		case trackRequest:
			if a.Num < uint64(len(cs.requests)) {
				d = cs.requests[a.Num]
			}
		}
		if d == nil {
			return inFetched{Track: a.Track, Num: a.Num, Err: coord.ErrNotFound}
		}
		return inFetched{Track: a.Track, Num: a.Num, Data: d}
	case actFetchLiveness:
		if cs.liveness == nil {
			return inLiveness{Err: &coord.StatusError{Code: 503}}
		}
		if !cs.exists {
			return inLiveness{Err: &coord.StatusError{Code: 404}}
		}
		rep := *cs.liveness
		rep.Epoch = cs.epoch
		return inLiveness{Report: &rep}
	case actPostRetire:
		switch {
		case !cs.exists:
			return inPosted{Post: postRetire, Epoch: a.Epoch, Err: &coord.StatusError{Code: 404}}
		case !cs.retireOK || a.Epoch != cs.epoch:
			return inPosted{Post: postRetire, Epoch: a.Epoch, Err: fmt.Errorf("%w: %w", coord.ErrRetireRefused, &coord.StatusError{Code: 409})}
		}
		cs.retire()
		return inPosted{Post: postRetire, Epoch: a.Epoch}
	case actPostJoin:
		created := !cs.exists
		cs.exists = true
		cs.request(wire.RequestJoin, a.KeyPackage)
		return inPosted{Post: postJoin, Created: created}
	case actPostLeave:
		cs.request(wire.RequestLeave, a.Proposal)
		return inPosted{Post: postLeave, Epoch: a.Epoch}
	case actReportUnprocessable:
		// Withdrawn at once (the real CS first waits for acknowledgements).
		if cs.epoch != a.Epoch+1 {
			return inPosted{Post: postUnprocessable, Epoch: a.Epoch, Err: &coord.StatusError{Code: 409}}
		}
		delete(cs.commits, a.Epoch)
		cs.epoch = a.Epoch
		return inPosted{Post: postUnprocessable, Epoch: a.Epoch}
	case actPostCommit:
		p := postCommit
		if a.Welcome != nil {
			p = postWelcome
		}
		switch {
		case a.Epoch == cs.epoch:
			cs.commits[a.Epoch] = a.Commit
			cs.epoch++
		case !bytes.Equal(cs.commits[a.Epoch], a.Commit):
			return inPosted{Post: p, Epoch: a.Epoch, Err: &coord.EpochConflictError{Group: "g", CommitEpoch: a.Epoch, Epoch: cs.epoch}}
		}
		if a.Welcome != nil {
			cs.welcomes[a.Epoch] = a.Welcome
		}
		return inPosted{Post: p, Epoch: a.Epoch}
	}
	return nil
}

// retire forgets the group, like the CS's retirement.
func (cs *fakeCS) retire() {
	cs.exists, cs.epoch, cs.requests = false, 0, nil
	cs.commits, cs.welcomes = map[uint64][]byte{}, map[uint64][]byte{}
	cs.retired++
}

// run carries out acts and everything that follows, like the driver, and
// returns every action seen.
func (cs *fakeCS) run(x *tc, acts []action) []action {
	var seen []action
	for len(acts) > 0 {
		a := acts[0]
		acts = acts[1:]
		seen = append(seen, a)
		if in := cs.answer(a); in != nil {
			acts = append(acts, x.step(in)...)
		}
	}
	return seen
}

// deliver hands x everything published so far, as MoQ would.
func (cs *fakeCS) deliver(x *tc) []action {
	var ins []input
	for s, r := range cs.requests {
		ins = append(ins, inObject{Track: trackRequest, Num: uint64(s), Data: r})
	}
	for e := range cs.epoch {
		ins = append(ins, inObject{Track: trackCommit, Num: e, Data: cs.commits[e]})
		if w := cs.welcomes[e]; w != nil {
			ins = append(ins, inObject{Track: trackWelcome, Num: e, Data: w})
		}
	}
	return cs.run(x, x.step(ins...))
}

// ---- assertions on actions ----

// kinds renders actions for comparison.
func kinds(acts []action) []string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = kind(a)
	}
	return out
}

func kind(a action) string {
	switch a := a.(type) {
	case actFetchState:
		return fmt.Sprintf("state(%d)", a.Purpose)
	case actFetch:
		return fmt.Sprintf("fetch %s %d", a.Track, a.Num)
	case actPostJoin:
		return "post join"
	case actPostCommit:
		if a.Welcome != nil {
			return fmt.Sprintf("post welcome %d", a.Epoch)
		}
		return fmt.Sprintf("post commit %d", a.Epoch)
	case actPostLeave:
		return fmt.Sprintf("post leave %d", a.Epoch)
	case actPostAck:
		return fmt.Sprintf("ack %d", a.Epoch)
	case actInstall:
		if a.Immediate {
			return fmt.Sprintf("install %d!", a.Key.Epoch)
		}
		return fmt.Sprintf("install %d", a.Key.Epoch)
	case actEmit:
		return "event " + a.Event.Type.String()
	case actArmTimer:
		if a.At.IsZero() {
			return "timer off"
		}
		return "timer +" + a.At.Sub(t0).String()
	case actTickSchedule:
		return "tick schedule"
	case actJoinDone:
		return fmt.Sprintf("join done %v", a.Err)
	case actCommitDone:
		return fmt.Sprintf("commit done won=%v conflicts=%d epoch=%d err=%v", a.Result.Won, a.Result.Conflicts, a.Result.Epoch, a.Err)
	case actLeaveDone:
		return fmt.Sprintf("leave done %v", a.Err)
	case actSending:
		return fmt.Sprintf("sending %v", a.On)
	case actReportUnprocessable:
		return fmt.Sprintf("report unprocessable %d", a.Epoch)
	case actFetchLiveness:
		return "liveness"
	case actPostRetire:
		return fmt.Sprintf("retire %d", a.Epoch)
	}
	return fmt.Sprintf("%T", a)
}

func wantActs(t *testing.T, who string, got []action, want ...string) {
	t.Helper()
	if k := kinds(got); !slices.Equal(k, want) {
		t.Fatalf("%s: actions\n got  %q\n want %q", who, k, want)
	}
}

func find[T action](acts []action) (T, bool) {
	for _, a := range acts {
		if v, ok := a.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func sameKeys(t *testing.T, xs ...*tc) {
	t.Helper()
	k0 := xs[0].key()
	for _, x := range xs[1:] {
		if k := x.key(); k.Epoch != k0.Epoch || !bytes.Equal(k.BaseKey, k0.BaseKey) {
			t.Fatalf("%s at epoch %d, %s at %d (or different keys)", xs[0].id, k0.Epoch, x.id, k.Epoch)
		}
	}
}

// ---- setups ----

// create makes x the creator of the group (CS answers 201).
func create(t *testing.T, cs *fakeCS, x *tc) {
	t.Helper()
	cs.run(x, x.step(inJoin{}))
	if !x.c.joined || x.c.epoch != 0 {
		t.Fatalf("%s did not create the group", x.id)
	}
}

// addByAlice has joiner request to join and alice commit it; every other
// member gets the commit on MoQ.
func addByAlice(t *testing.T, cs *fakeCS, alice, joiner *tc, others ...*tc) {
	t.Helper()
	cs.run(joiner, joiner.step(inJoin{}))
	cs.deliver(alice)
	acts := cs.run(alice, alice.step(inCommit{Token: 1}))
	if d, ok := find[actCommitDone](acts); !ok || !d.Result.Won {
		t.Fatalf("alice's commit: %q", kinds(acts))
	}
	for _, o := range others {
		cs.deliver(o)
	}
	cs.deliver(joiner)
	if !joiner.c.joined {
		t.Fatalf("%s did not join", joiner.id)
	}
}

// ---- tests ----

func TestCoreJoinCreate(t *testing.T) {
	cs := newFakeCS(t)
	a := newTC(t, "alice", nil)
	wantActs(t, "join", a.step(inJoin{}), "state(1)")
	// A transport error is retried with backoff.
	wantActs(t, "state error", a.step(inState{Purpose: stateJoin, Err: fmt.Errorf("connection refused")}), "timer +100ms")
	a.now = t0.Add(100 * time.Millisecond)
	wantActs(t, "retry", a.step(inTick{}), "state(1)")
	acts := a.step(inState{Purpose: stateJoin, Err: coord.ErrUnknownGroup})
	wantActs(t, "no group", acts, "post join")
	wantActs(t, "201", a.step(cs.answer(acts[0])),
		"install 0", "ack 0", "event joined", "state(3)", "timer +1.1s")
	if a.c.epoch != 0 || !a.c.joined {
		t.Fatal("not a member at epoch 0")
	}
}

func TestCoreJoinRefused(t *testing.T) {
	a := newTC(t, "alice", nil)
	a.step(inJoin{})
	a.step(inState{Purpose: stateJoin, Epoch: 3, NextSeq: 7})
	acts := a.step(inPosted{Post: postJoin, Err: &coord.StatusError{Code: 400, Message: "bad"}})
	if d, ok := find[actJoinDone](acts); !ok || d.Err == nil {
		t.Fatalf("want a final join error, got %q", kinds(acts))
	}
}

func TestCoreJoinWelcome(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", nil)
	create(t, cs, alice)

	// bob: state, join request, 202: wait for the Welcome.
	wantActs(t, "bob join", bob.step(inJoin{}), "state(1)")
	acts := bob.step(cs.answer(actFetchState{Purpose: stateJoin}))
	wantActs(t, "bob state", acts, "post join")
	wantActs(t, "bob 202", bob.step(inPosted{Post: postJoin}), "state(3)", "timer +1s")
	cs.answer(acts[0]) // the CS records bob's request (seq 1)

	// alice (automatic, rank 0) sees the request and commits after CommitDelay.
	alice.c.cfg.Manual = false
	wantActs(t, "alice sees requests", alice.step(
		inObject{Track: trackRequest, Num: 0, Data: cs.requests[0]},
		inObject{Track: trackRequest, Num: 1, Data: cs.requests[1]}), "timer +50ms")
	if alice.c.pendingJoins() != 1 {
		t.Fatalf("alice has %d pending joins", alice.c.pendingJoins())
	}
	alice.now = t0.Add(50 * time.Millisecond)
	acts = alice.step(inTick{})
	wantActs(t, "alice commits", acts, "post commit 0", "timer +1s")
	acts = alice.step(cs.answer(acts[0]))
	wantActs(t, "alice 200", acts, "install 1", "ack 1", "post welcome 0", "event committed")
	if ev := acts[3].(actEmit).Event; ev.Added != 1 || ev.Members != 2 || ev.CommitRTT != 0 {
		t.Fatalf("committed event %+v", ev)
	}
	wantActs(t, "welcome accepted", alice.step(cs.answer(acts[2])))

	// bob's resync answer (the CS is at epoch 1 now): fetch the Welcome,
	// but it arrives on MoQ first; the fetch answer is then ignored.
	acts = bob.step(cs.answer(actFetchState{Purpose: stateResync}))
	wantActs(t, "bob resync", acts, "fetch welcome 0")
	acts = bob.step(inObject{Track: trackWelcome, Num: 0, Data: cs.welcomes[0]})
	wantActs(t, "bob welcome", acts, "install 1", "ack 1", "event joined", "fetch request 1")
	if !bob.c.unwanted(actFetch{Track: trackWelcome, Num: 0}) {
		t.Fatal("the Welcome fetch is still wanted after joining")
	}
	wantActs(t, "late fetch answer", bob.step(inFetched{Track: trackWelcome, Num: 0, Skipped: true}))
	sameKeys(t, alice, bob)
}

func TestCoreCommitRace(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob, carol := newTC(t, "alice", nil), newTC(t, "bob", nil), newTC(t, "carol", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	cs.run(carol, carol.step(inJoin{}))
	cs.deliver(alice)
	cs.deliver(bob)
	if alice.c.pendingJoins() != 1 || bob.c.pendingJoins() != 1 {
		t.Fatal("carol's request not pending at both")
	}

	// Both stage at epoch 1.
	aActs, bActs := alice.step(inCommit{Token: 1}), bob.step(inCommit{Token: 2})
	wantActs(t, "alice stages", aActs, "post commit 1")
	wantActs(t, "bob stages", bActs, "post commit 1")
	// alice's POST reaches the CS first: 200.
	acts := alice.step(cs.answer(aActs[0]))
	wantActs(t, "alice 200", acts,
		"install 2", "ack 2", "post welcome 1", "event committed", "commit done won=true conflicts=0 epoch=2 err=<nil>")
	// The late Welcome's POST fails: it is retried at the next poll.
	wantActs(t, "welcome lost", alice.step(inPosted{Post: postWelcome, Epoch: 1, Err: fmt.Errorf("503")}))
	// bob's: 409; he catches up (the commit is not on MoQ yet: archive).
	acts = bob.step(cs.answer(bActs[0]))
	wantActs(t, "bob 409", acts, "event conflict", "fetch commit 1")
	wantActs(t, "bob catches up", bob.step(cs.answer(acts[1])),
		"install 2", "ack 2", "event epoch", "commit done won=false conflicts=1 epoch=2 err=<nil>")
	if bob.c.pendingJoins() != 0 {
		t.Fatal("carol still pending at bob")
	}
	alice.now = alice.now.Add(time.Second)
	acts = alice.step(inTick{})
	wantActs(t, "poll retries the Welcome", acts, "tick schedule", "post welcome 1", "state(2)", "timer +2s")
	cs.run(alice, acts[1:2])
	if alice.c.welcomeOut != nil || cs.welcomes[1] == nil {
		t.Fatal("Welcome still pending")
	}
	cs.deliver(carol)
	sameKeys(t, alice, bob, carol)
}

func TestCoreCommitRaceWelcome(t *testing.T) {
	// The same race end to end through the fake CS: the loser ends up in
	// the winner's epoch and the joiner gets the winner's Welcome.
	cs := newFakeCS(t)
	alice, bob, carol := newTC(t, "alice", nil), newTC(t, "bob", nil), newTC(t, "carol", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	cs.run(carol, carol.step(inJoin{}))
	cs.deliver(alice)
	cs.deliver(bob)
	aActs, bActs := alice.step(inCommit{Token: 1}), bob.step(inCommit{Token: 1})
	cs.run(bob, bActs) // bob first this time
	cs.run(alice, aActs)
	cs.deliver(carol)
	cs.deliver(alice)
	sameKeys(t, alice, bob, carol)
}

func TestCoreLeave(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob, carol := newTC(t, "alice", nil), newTC(t, "bob", nil), newTC(t, "carol", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	addByAlice(t, cs, alice, carol, bob)
	sameKeys(t, alice, bob, carol)
	alice.c.cfg.Manual, carol.c.cfg.Manual = false, false

	acts := bob.step(inLeave{Token: 9})
	wantActs(t, "bob leaves", acts, "post leave 2", "leave done <nil>")
	cs.run(bob, acts)
	// Both remaining members store the proposal; alice (rank 0) commits
	// after CommitDelay, carol (rank 1, bob does not count) only later.
	alice.step(inObject{Track: trackRequest, Num: 3, Data: cs.requests[3]})
	if alice.c.commitAt != alice.now.Add(50*time.Millisecond) {
		t.Fatalf("alice commits at %v", alice.c.commitAt)
	}
	carol.step(inObject{Track: trackRequest, Num: 3, Data: cs.requests[3]})
	if carol.c.commitAt != carol.now.Add(50*time.Millisecond+2*time.Second) {
		t.Fatalf("carol commits at %v", carol.c.commitAt.Sub(carol.now))
	}
	alice.now = alice.now.Add(50 * time.Millisecond)
	acts = alice.step(inTick{})
	wantActs(t, "alice commits the leave", acts, "post commit 2", "timer +1s")
	acts = alice.step(cs.answer(acts[0]))
	// The epoch removed bob: it is sealed with at once.
	wantActs(t, "alice 200", acts, "install 3!", "ack 3", "event committed")

	wantActs(t, "carol applies", carol.step(inObject{Track: trackCommit, Num: 2, Data: cs.commits[2]}),
		"install 3!", "ack 3", "event epoch")
	wantActs(t, "bob removed", bob.step(inObject{Track: trackCommit, Num: 2, Data: cs.commits[2]}),
		"event removed", "timer off")
	if !bob.c.removed {
		t.Fatal("bob not removed")
	}
	bob.now = bob.now.Add(time.Hour)
	wantActs(t, "removed member is quiet", bob.step(inTick{}))
	sameKeys(t, alice, carol)
}

func TestCoreLeaveReproposed(t *testing.T) {
	// A commit without our proposal made it expire: propose again.
	cs := newFakeCS(t)
	alice, bob, carol := newTC(t, "alice", nil), newTC(t, "bob", nil), newTC(t, "carol", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	// carol's join request (seq 2) reaches alice, who commits it before
	// bob's leave request (seq 3) arrives.
	cs.run(carol, carol.step(inJoin{}))
	cs.deliver(alice)
	acts := alice.step(inCommit{Token: 1})
	cs.run(bob, bob.step(inLeave{Token: 1}))
	cs.run(alice, acts)
	acts = bob.step(inObject{Track: trackCommit, Num: 1, Data: cs.commits[1]})
	wantActs(t, "bob re-proposes", acts, "install 2", "ack 2", "post leave 2", "event epoch")
}

func TestCoreCatchUp(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	// alice commits carol (epoch 1) and dave (epoch 2); bob misses both.
	addByAlice(t, cs, alice, newTC(t, "carol", nil))
	addByAlice(t, cs, alice, newTC(t, "dave", nil))

	// The commit made in epoch 2 arrives first: bob asks for epoch 1's.
	acts := bob.step(inObject{Track: trackCommit, Num: 2, Data: cs.commits[2]})
	wantActs(t, "later commit first", acts, "fetch commit 1")
	// The missing one arrives on MoQ meanwhile: both applied, in order.
	wantActs(t, "missing one arrives", bob.step(inObject{Track: trackCommit, Num: 1, Data: cs.commits[1]}),
		"install 2", "ack 2", "event epoch", "install 3", "ack 3", "event epoch")
	if !bob.c.unwanted(acts[0].(actFetch)) {
		t.Fatal("fetch still wanted")
	}
	wantActs(t, "fetch answer after the fact", bob.step(inFetched{Track: trackCommit, Num: 1, Data: cs.commits[1]}))
	sameKeys(t, alice, bob)
}

func TestCoreCatchUpFetchFails(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	addByAlice(t, cs, alice, newTC(t, "carol", nil))
	addByAlice(t, cs, alice, newTC(t, "dave", nil))
	wantActs(t, "gap", bob.step(inObject{Track: trackCommit, Num: 2, Data: cs.commits[2]}), "fetch commit 1")
	// The CS cannot answer: held until the next poll, not asked again at once.
	wantActs(t, "fetch fails", bob.step(inFetched{Track: trackCommit, Num: 1, Err: fmt.Errorf("503")}))
	wantActs(t, "still held", bob.step(inObject{Track: trackCommit, Num: 2, Data: cs.commits[2]}))
	bob.now = bob.now.Add(time.Second)
	acts := bob.step(inTick{})
	wantActs(t, "poll", acts, "tick schedule", "state(2)", "fetch commit 1", "timer +2s")
	cs.run(bob, acts)
	sameKeys(t, alice, bob)
}

func TestCorePollCycle(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	// bob's resync after joining saw the CS at epoch 1 / 2 requests.
	cs.run(bob, []action{actFetchState{Purpose: stateResync}})
	// alice adds carol; bob misses the commit and carol's request on MoQ.
	addByAlice(t, cs, alice, newTC(t, "carol", nil))

	step := func(d time.Duration) []action {
		bob.now = t0.Add(d)
		return bob.step(inTick{})
	}
	wantActs(t, "early tick", step(999*time.Millisecond), "timer +1s")
	acts := step(time.Second)
	wantActs(t, "poll", acts, "tick schedule", "state(2)", "timer +2s")
	// The CS is at epoch 2 with 3 requests, but at the previous read it was
	// at 1 / 2: only what was decided then is fetched (nothing: bob has it).
	wantActs(t, "grace", bob.step(cs.answer(acts[1])))
	acts = step(2 * time.Second)
	wantActs(t, "next poll", acts, "tick schedule", "state(2)", "timer +3s")
	acts = bob.step(cs.answer(acts[1]))
	wantActs(t, "fetch what the CS had decided", acts, "fetch request 2", "fetch commit 1")
	wantActs(t, "request", bob.step(cs.answer(acts[0])))
	wantActs(t, "commit", bob.step(cs.answer(acts[1])), "install 2", "ack 2", "event epoch")
	sameKeys(t, alice, bob)

	// A poll that cannot reach the CS changes nothing.
	acts = step(3 * time.Second)
	wantActs(t, "poll", acts, "tick schedule", "state(2)", "timer +4s")
	wantActs(t, "unreachable", bob.step(inState{Purpose: statePoll, Err: fmt.Errorf("timeout")}))
}

func TestCoreCommitRetriedAfterTransportError(t *testing.T) {
	// The outcome of a failed POST is unknown: the commit stays staged and
	// the identical request is posted again at the next poll.
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", nil)
	create(t, cs, alice)
	cs.run(bob, bob.step(inJoin{}))
	cs.deliver(alice)
	acts := alice.step(inCommit{Token: 4})
	wantActs(t, "stage", acts, "post commit 0")
	cs.answer(acts[0]) // the CS accepted it, but the answer was lost
	wantActs(t, "lost answer", alice.step(inPosted{Post: postCommit, Epoch: 0, Err: fmt.Errorf("EOF")}),
		"commit done won=false conflicts=0 epoch=0 err=EOF")
	alice.now = alice.now.Add(time.Second)
	acts = alice.step(inTick{})
	wantActs(t, "poll re-posts", acts, "tick schedule", "post commit 0", "state(2)", "timer +2s")
	wantActs(t, "200", alice.step(cs.answer(acts[1])), "install 1", "ack 1", "post welcome 0", "event committed")
}

func TestCoreJoinAnswers(t *testing.T) {
	refused := &coord.StatusError{Code: 403, Message: "no"}
	for _, tt := range []struct {
		name   string
		answer inPosted
		want   []string
	}{
		{"201 creates", inPosted{Post: postJoin, Created: true},
			[]string{"install 0", "ack 0", "event joined", "state(3)", "timer +1s"}},
		{"200 waits for the Welcome", inPosted{Post: postJoin}, []string{"state(3)", "timer +1s"}},
		{"4xx ends the join", inPosted{Post: postJoin, Err: refused},
			[]string{"join done group: join request refused: " + refused.Error()}},
		{"5xx is retried", inPosted{Post: postJoin, Err: &coord.StatusError{Code: 503}}, []string{"timer +100ms"}},
		{"transport error is retried", inPosted{Post: postJoin, Err: fmt.Errorf("EOF")}, []string{"timer +100ms"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := newTC(t, "alice", nil)
			wantActs(t, "join", x.step(inJoin{}), "state(1)")
			wantActs(t, "state", x.step(inState{Purpose: stateJoin, Err: coord.ErrUnknownGroup}), "post join")
			wantActs(t, "answer", x.step(tt.answer), tt.want...)
		})
	}
}

func TestCoreJoinAborted(t *testing.T) {
	x := newTC(t, "alice", nil)
	x.step(inJoin{})
	wantActs(t, "state fails", x.step(inState{Purpose: stateJoin, Err: fmt.Errorf("refused")}), "timer +100ms")
	wantActs(t, "abort", x.step(inAbortJoin{}), "timer off")
	x.now = x.now.Add(time.Second)
	wantActs(t, "no retry", x.step(inTick{}))
}

func TestCoreRepairMissedProposal(t *testing.T) {
	// bob misses carol's leave proposal; the commit refers to it, so bob
	// fetches the requests he lacks and applies the commit again.
	cs := newFakeCS(t)
	alice, bob, carol := newTC(t, "alice", nil), newTC(t, "bob", nil), newTC(t, "carol", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	addByAlice(t, cs, alice, carol, bob)
	cs.run(carol, carol.step(inLeave{Token: 1}))
	cs.deliver(alice)
	cs.run(alice, alice.step(inCommit{Token: 1}))
	if alice.c.epoch != 3 {
		t.Fatalf("alice at %d", alice.c.epoch)
	}
	acts := bob.step(inObject{Track: trackCommit, Num: 2, Data: cs.commits[2]})
	wantActs(t, "commit fails", acts, "state(4)")
	acts = bob.step(cs.answer(acts[0]))
	wantActs(t, "fetch the missed request", acts, "fetch request 3")
	wantActs(t, "applied", bob.step(cs.answer(acts[0])), "install 3!", "ack 3", "event epoch")
	sameKeys(t, alice, bob)
}

func TestCoreLateWelcomeWhileAnotherInFlight(t *testing.T) {
	// A second commit of ours wins while the first one's Welcome is still
	// being posted: its Welcome goes out once that answer is in.
	cs := newFakeCS(t)
	alice, bob, carol := newTC(t, "alice", nil), newTC(t, "bob", nil), newTC(t, "carol", nil)
	create(t, cs, alice)
	cs.run(bob, bob.step(inJoin{}))
	cs.deliver(alice)
	acts := alice.step(inCommit{Token: 1})
	acts = alice.step(cs.answer(acts[0]))
	wantActs(t, "first commit", acts, "install 1", "ack 1", "post welcome 0", "event committed",
		"commit done won=true conflicts=0 epoch=1 err=<nil>")
	first := acts[2] // its answer is late
	cs.run(carol, carol.step(inJoin{}))
	cs.deliver(alice)
	acts = alice.step(inCommit{Token: 2})
	wantActs(t, "second commit", acts, "post commit 1")
	wantActs(t, "second won", alice.step(cs.answer(acts[0])), "install 2", "ack 2", "event committed",
		"commit done won=true conflicts=0 epoch=2 err=<nil>")
	wantActs(t, "first Welcome answered", alice.step(cs.answer(first)), "post welcome 1")
}
