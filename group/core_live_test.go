package group

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/identity"
)

// Liveness tests of the core: explicit times, the fake CS's liveness
// report set by the test.

func liveCfg(c *Config) {
	c.Manual = false
	c.LivenessTimeout = 30 * time.Second
	c.HeartbeatInterval = 5 * time.Second
}

// report is a liveness report: name@leaf -> silence.
func report(recs map[string]time.Duration) *coord.LivenessReport {
	rep := &coord.LivenessReport{Group: "g", TimeoutMS: 30_000}
	for k, d := range recs {
		var name string
		var leaf uint32
		for i := len(k) - 1; i >= 0; i-- {
			if k[i] == '@' {
				name = k[:i]
				leaf = uint32(k[i+1] - '0')
				break
			}
		}
		rep.Members = append(rep.Members, coord.LiveMember{Identity: name, Leaf: leaf, SilentMS: d.Milliseconds()})
	}
	return rep
}

func silentEvent(acts []action) (Event, bool) {
	for _, a := range acts {
		if e, ok := a.(actEmit); ok && e.Event.Type == EventSilent {
			return e.Event, true
		}
	}
	return Event{}, false
}

// three: alice (leaf 0) created the group and added bob (1) and carol (2).
func three(t *testing.T, cs *fakeCS) (alice, bob, carol *tc) {
	t.Helper()
	alice, bob, carol = newTC(t, "alice", liveCfg), newTC(t, "bob", liveCfg), newTC(t, "carol", liveCfg)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	addByAlice(t, cs, alice, carol, bob)
	sameKeys(t, alice, bob, carol)
	return alice, bob, carol
}

// at moves x's clock to t0+d and ticks.
func (x *tc) at(d time.Duration) []action {
	x.now = t0.Add(d)
	return x.step(inTick{})
}

// TestCoreSilentMemberRemoved: the liveness tick reads the CS's records; a member silent for the timeout is reported
// (EventSilent) and the committer removes it; the removed member learns it
// from the commit.
func TestCoreSilentMemberRemoved(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob, carol := three(t, cs)
	cs.liveness = report(map[string]time.Duration{"alice@0": 0, "bob@1": 0, "carol@2": 29 * time.Second})
	acts := alice.at(5 * time.Second)
	if k := kinds(acts); !slices.Contains(k, "liveness") {
		t.Fatalf("no liveness read at the interval: %q", k)
	}
	seen := cs.run(alice, acts)
	if _, ok := silentEvent(seen); ok || alice.c.commitAt != (time.Time{}) {
		t.Fatalf("carol silent after 29 s: %q", kinds(seen))
	}
	cs.liveness = report(map[string]time.Duration{"alice@0": 0, "bob@1": 0, "carol@2": 34 * time.Second})
	seen = cs.run(alice, alice.at(10*time.Second))
	ev, ok := silentEvent(seen)
	if !ok || !slices.Equal(ev.Silent, []string{"carol"}) {
		t.Fatalf("no EventSilent for carol: %q", kinds(seen))
	}
	if alice.c.commitAt != alice.now.Add(50*time.Millisecond) {
		t.Fatalf("alice (rank 0) commits at %v", alice.c.commitAt.Sub(alice.now))
	}
	seen = cs.run(alice, alice.at(10*time.Second+50*time.Millisecond))
	if c, ok := find[actEmit](filterEvents(seen, EventCommitted)); !ok || c.Event.RemovedSilent != 1 || c.Event.Members != 2 {
		t.Fatalf("alice's commit: %q", kinds(seen))
	}
	if alice.c.live.removed != 1 || len(alice.c.live.silent) != 0 {
		t.Fatalf("after the removal: removed %d, silent %v", alice.c.live.removed, alice.c.live.silent)
	}
	cs.deliver(bob)
	sameKeys(t, alice, bob)
	cs.deliver(carol)
	if !carol.c.removed {
		t.Fatal("carol not removed")
	}
}

func filterEvents(acts []action, typ EventType) []action {
	var out []action
	for _, a := range acts {
		if e, ok := a.(actEmit); ok && e.Event.Type == typ {
			out = append(out, a)
		}
	}
	return out
}

// TestCoreSilentCommitterSkipped: a silent member does not count in the
// rank, so when the designated committer (alice, leaf 0) is silent, bob
// commits at once and removes her.
func TestCoreSilentCommitterSkipped(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob, _ := three(t, cs)
	_ = alice
	cs.liveness = report(map[string]time.Duration{"alice@0": time.Minute, "bob@1": 0, "carol@2": 0})
	cs.run(bob, bob.at(5*time.Second))
	if bob.c.rank() != 0 || bob.c.commitAt != bob.now.Add(50*time.Millisecond) {
		t.Fatalf("bob: rank %d, commits in %v", bob.c.rank(), bob.c.commitAt.Sub(bob.now))
	}
	seen := cs.run(bob, bob.at(5*time.Second+50*time.Millisecond))
	if c, ok := find[actEmit](filterEvents(seen, EventCommitted)); !ok || c.Event.RemovedSilent != 1 {
		t.Fatalf("bob's commit: %q", kinds(seen))
	}
	if r, _ := bob.mls.Roster(bob.c.ctx); len(r) != 2 || r[0].Name == "alice" {
		t.Fatalf("roster %v", r)
	}
}

// TestCoreLivenessRecordMustMatch: a record counts only for the name and
// leaf of the verified roster: mallory's record at carol's leaf does not
// keep carol, and a member without any record has the timeout from the
// first report that lacked it. A failed read clears the silent set.
func TestCoreLivenessRecordMustMatch(t *testing.T) {
	cs := newFakeCS(t)
	alice, _, _ := three(t, cs)
	alice.c.cfg.Manual = true // look at the silent set only
	cs.liveness = report(map[string]time.Duration{"alice@0": 0, "bob@1": 0, "mallory@2": 0, "carol@1": 0})
	cs.run(alice, alice.at(5*time.Second))
	if len(alice.c.live.silent) != 0 {
		t.Fatalf("silent at the first report: %v", alice.c.live.silent)
	}
	cs.run(alice, alice.at(30*time.Second))
	if len(alice.c.live.silent) != 0 {
		t.Fatalf("silent before the timeout: %v", alice.c.live.silent)
	}
	seen := cs.run(alice, alice.at(35*time.Second))
	if ev, ok := silentEvent(seen); !ok || !slices.Equal(ev.Silent, []string{"carol"}) {
		t.Fatalf("carol not silent a timeout after the first report without her: %q", kinds(seen))
	}
	cs.liveness = nil // 503
	seen = cs.run(alice, alice.at(40*time.Second))
	if ev, ok := silentEvent(seen); !ok || len(ev.Silent) != 0 || len(alice.c.live.silent) != 0 {
		t.Fatalf("a failed read kept the silent set: %q %v", kinds(seen), alice.c.live.silent)
	}
}

// TestCoreLastMemberRetires: members that leave together each see the
// other's leave proposal; the one that is then last asks the CS to retire
// the group, and the other learns it is gone (404) from its own retire.
// Both are then out (EventRemoved), and the group is joinable afresh.
func TestCoreLastMemberRetires(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", liveCfg), newTC(t, "bob", liveCfg)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	cs.retireOK = true
	wantActs(t, "alice leaves", cs.run(alice, alice.step(inLeave{Token: 1})), "post leave 1", "leave done <nil>")
	wantActs(t, "bob leaves", cs.run(bob, bob.step(inLeave{Token: 1})), "post leave 1", "leave done <nil>")
	aliceLeave, bobLeave := cs.requests[2], cs.requests[3]
	// bob gets alice's proposal: everyone else is leaving.
	acts := bob.step(inObject{Track: trackRequest, Num: 2, Data: aliceLeave})
	wantActs(t, "bob is last", acts, "retire 1")
	wantActs(t, "bob retired", bob.step(cs.answer(acts[0])), "event removed", "timer off")
	acts = alice.step(inObject{Track: trackRequest, Num: 2, Data: aliceLeave}, inObject{Track: trackRequest, Num: 3, Data: bobLeave})
	wantActs(t, "alice is last too", acts, "retire 1")
	wantActs(t, "alice: already retired", alice.step(cs.answer(acts[0])), "event removed", "timer off")
	if cs.retired != 1 {
		t.Fatalf("retired %d times", cs.retired)
	}
	carol := newTC(t, "carol", liveCfg)
	create(t, cs, carol)
}

// TestCoreRetireRefused: a refused retire (409) leaves the leave request
// standing; it is tried again at the next poll, and a sole member retires
// at once.
func TestCoreRetireRefused(t *testing.T) {
	cs := newFakeCS(t)
	alice := newTC(t, "alice", liveCfg)
	create(t, cs, alice)
	acts := alice.step(inLeave{Token: 1})
	wantActs(t, "sole member leaves", acts, "post leave 0", "leave done <nil>", "retire 0")
	seen := cs.run(alice, acts)
	if alice.c.removed || cs.retired != 0 || !slices.Contains(kinds(seen), "retire 0") {
		t.Fatalf("refused retire: %q", kinds(seen))
	}
	alice.now = alice.now.Add(500 * time.Millisecond)
	if k := kinds(cs.run(alice, alice.step(inObject{Track: trackRequest, Num: 99, Data: []byte("x")}))); slices.Contains(k, "retire 0") {
		t.Fatalf("retried before the poll: %q", k)
	}
	cs.retireOK = true
	seen = cs.run(alice, alice.at(time.Second))
	if !alice.c.removed || cs.retired != 1 {
		t.Fatalf("retry at the poll: %q", kinds(seen))
	}
}

// TestCoreJoinerRecreatesRetiredGroup: a joiner waiting for its Welcome
// in a group that is then retired learns it at its poll (404) and posts
// its join again, which creates the group afresh (201). Without a poll
// answer it reposts after the liveness timeout.
func TestCoreJoinerRecreatesRetiredGroup(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", liveCfg), newTC(t, "bob", liveCfg)
	create(t, cs, alice)
	cs.run(bob, bob.step(inJoin{}))
	if bob.c.joined || bob.c.join.phase != joinWaiting {
		t.Fatal("bob is not waiting for a Welcome")
	}
	if bob.c.join.repostAt != bob.now.Add(30*time.Second) {
		t.Fatalf("repost in %v", bob.c.join.repostAt.Sub(bob.now))
	}
	cs.retire()
	seen := cs.run(bob, bob.at(time.Second+100*time.Millisecond))
	if !bob.c.joined || bob.c.epoch != 0 || cs.epoch != 0 || !cs.exists {
		t.Fatalf("bob did not create the retired group: %q", kinds(seen))
	}
	if !slices.Contains(kinds(seen), "post join") || !slices.Contains(kinds(seen), "event joined") {
		t.Fatalf("actions %q", kinds(seen))
	}
	// carol's join in the new group is bob's to commit.
	carol := newTC(t, "carol", liveCfg)
	cs.run(carol, carol.step(inJoin{}))
	cs.deliver(bob)
	cs.run(bob, bob.step(inCommit{Token: 1}))
	cs.deliver(carol)
	sameKeys(t, bob, carol)

	// The timed repost: the CS answers 200 again (the group lives), and
	// the next repost is armed.
	dave := newTC(t, "dave", liveCfg)
	cs.run(dave, dave.step(inJoin{}))
	dave.c.cfg.PollInterval = time.Hour
	dave.c.sync.nextPoll = dave.now.Add(time.Hour)
	seen = cs.run(dave, dave.at(30*time.Second))
	if k := kinds(seen); !slices.Contains(k, "post join") || dave.c.joined || dave.c.join.repostAt != t0.Add(60*time.Second) {
		t.Fatalf("timed repost: %q, joined %v, next %v", k, dave.c.joined, dave.c.join.repostAt.Sub(t0))
	}
}

// TestCoreGroupRetiredUnderMember: a member whose poll finds the group
// unknown was left behind by a retirement: EventRemoved with
// ErrGroupRetired.
func TestCoreGroupRetiredUnderMember(t *testing.T) {
	cs := newFakeCS(t)
	alice := newTC(t, "alice", liveCfg)
	create(t, cs, alice)
	cs.retire()
	seen := cs.run(alice, alice.at(time.Second+100*time.Millisecond))
	ev, ok := find[actEmit](filterEvents(seen, EventRemoved))
	if !ok || !errors.Is(ev.Event.Err, ErrGroupRetired) || !alice.c.removed {
		t.Fatalf("actions %q", kinds(seen))
	}
}

// TestCoreSilentMemberReplacedBySameCertificate: a member killed and
// restarted with the same certificate cannot be added while its old leaf is
// a member (mls-go refuses an Add of a signature key in the tree): its join
// waits, parked, while the old leaf is alive; once the leaf is silent one
// commit removes it and the next adds the restarted member.
func TestCoreSilentMemberReplacedBySameCertificate(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", liveCfg), newTC(t, "bob", liveCfg)
	var cert *identity.Certificate
	carol := newTC(t, "carol", func(c *Config) { liveCfg(c); cert = c.Certificate })
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	addByAlice(t, cs, alice, carol, bob)
	carol2 := newTC(t, "carol", func(c *Config) { liveCfg(c); c.Certificate = cert })
	cs.run(carol2, carol2.step(inJoin{}))
	cs.deliver(alice)
	// Committing now adds nobody: carol's leaf is alive.
	acts := cs.run(alice, alice.step(inCommit{Token: 7}))
	if d, ok := find[actCommitDone](acts); !ok || d.Result.Won || len(alice.c.parked) != 1 || len(alice.c.joins) != 0 {
		t.Fatalf("commit with carol alive: %q, parked %d", kinds(acts), len(alice.c.parked))
	}
	cs.liveness = report(map[string]time.Duration{"alice@0": 0, "bob@1": 0, "carol@2": time.Minute})
	seen := cs.run(alice, alice.at(5*time.Second))
	seen = append(seen, cs.run(alice, alice.at(5*time.Second+50*time.Millisecond))...)
	seen = append(seen, cs.run(alice, alice.at(5*time.Second+100*time.Millisecond))...)
	var removed, added int
	for _, a := range filterEvents(seen, EventCommitted) {
		removed += a.(actEmit).Event.RemovedSilent
		added += a.(actEmit).Event.Added
	}
	if removed != 1 || added != 1 || len(alice.c.parked) != 0 {
		t.Fatalf("alice's commits: %q, removed %d added %d", kinds(seen), removed, added)
	}
	cs.deliver(carol2)
	cs.deliver(bob)
	if !carol2.c.joined {
		t.Fatal("the restarted carol did not join")
	}
	sameKeys(t, alice, bob, carol2)
	cs.deliver(carol)
	if !carol.c.removed {
		t.Fatal("the old carol not removed")
	}
}

// TestCoreLivenessReadsByRank: members that may commit read the liveness
// records every HeartbeatInterval, the others every LivenessTimeout/3.
func TestCoreLivenessReadsByRank(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob, carol := three(t, cs)
	dave := newTC(t, "dave", liveCfg)
	addByAlice(t, cs, alice, dave, bob, carol)
	cs.liveness = report(map[string]time.Duration{"alice@0": 0, "bob@1": 0, "carol@2": 0, "dave@3": 0})
	for _, x := range []*tc{alice, bob, carol, dave} {
		cs.run(x, x.at(5*time.Second))
	}
	for x, want := range map[*tc]time.Duration{alice: 10 * time.Second, carol: 10 * time.Second, dave: 15 * time.Second} {
		if got := x.c.live.nextRead.Sub(t0); got != want {
			t.Errorf("%s (rank %d): next read at %v, want %v", x.id, x.c.rank(), got, want)
		}
	}
}
