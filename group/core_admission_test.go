package group

import (
	"errors"
	"testing"

	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/testpki"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// Admission in the core: who a committer adds, and what a member does with
// a commit it refuses or cannot process. Real MLS members, the fake CS,
// explicit times.

// strict admits alice, bob and carol to "g".
func strict(t *testing.T) func(*Config) {
	t.Helper()
	p, err := identity.ParsePolicy([]byte(`{"groups": {"g": ["alice", "bob", "carol"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) { c.Policy = p }
}

// refusals returns the EventRefused events among acts.
func refusals(acts []action) []Event {
	var out []Event
	for _, a := range acts {
		if e, ok := a.(actEmit); ok && e.Event.Type == EventRefused {
			out = append(out, e.Event)
		}
	}
	return out
}

// TestCoreAdmissionJoins: join requests from an outsider with a valid
// certificate, from another CA, and a second KeyPackage for a member's
// name without a new certificate are refused (counted, an event each); an
// admitted joiner is added, and only it.
func TestCoreAdmissionJoins(t *testing.T) {
	cs := newFakeCS(t)
	alice := newTC(t, "alice", strict(t))
	create(t, cs, alice)

	// Requests posted directly (an outsider's KeyPackage reaches the
	// RequestTrack only through a broken or bypassed CS).
	outsider := newTC(t, "mallory", nil) // admitted by its own (open) policy
	foreign := newTCWith(t, testpki.New(), "bob")
	for _, x := range []*tc{outsider, foreign} {
		kp, err := x.mls.KeyPackage(x.c.ctx)
		if err != nil {
			t.Fatal(err)
		}
		cs.request(wire.RequestJoin, kp)
	}
	bob := newTC(t, "bob", strict(t))
	cs.run(bob, bob.step(inJoin{}))
	acts := cs.deliver(alice)
	ev := refusals(acts)
	if len(ev) != 2 || !errors.Is(ev[0].Err, identity.ErrNotAdmitted) || !errors.Is(ev[1].Err, identity.ErrUntrusted) {
		t.Fatalf("refusals %v", ev)
	}
	if alice.c.pendingJoins() != 1 {
		t.Fatalf("pending %d", alice.c.pendingJoins())
	}
	acts = cs.run(alice, alice.step(inCommit{Token: 1}))
	if d, ok := find[actCommitDone](acts); !ok || !d.Result.Won {
		t.Fatalf("alice's commit: %q", kinds(acts))
	}
	cs.deliver(bob)
	if !bob.c.joined {
		t.Fatal("bob did not join")
	}
	r, err := alice.mls.Roster(alice.c.ctx)
	if err != nil || len(r) != 2 || r[0].Name != "alice" || r[1].Name != "bob" {
		t.Fatalf("roster %+v %v", r, err)
	}
	if len(alice.rosters) != 2 || alice.rosters[1].Members != 2 {
		t.Fatalf("alice's roster events %+v", alice.rosters)
	}
}

// newTCWith is newTC with a certificate from another CA, trusting it.
func newTCWith(t *testing.T, pki *testpki.PKI, id string) *tc {
	t.Helper()
	return newTC(t, id, func(c *Config) {
		c.Certificate, c.Verifier = pki.Issue(t, id), pki.Verifier
	})
}

// TestCoreAdmissionRestart: a member restarting with a new key and a valid
// certificate replaces its old leaf in one commit; the old one is removed
// (the epoch is installed at once).
func TestCoreAdmissionRestart(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", strict(t)), newTC(t, "bob", strict(t))
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	oldFP := fingerprintOf(t, bob)

	bob2 := newTC(t, "bob", strict(t))
	cs.run(bob2, bob2.step(inJoin{}))
	cs.deliver(alice)
	if alice.c.pendingJoins() != 1 {
		t.Fatalf("the restarted bob is not pending at alice (%d)", alice.c.pendingJoins())
	}
	acts := cs.run(alice, alice.step(inCommit{Token: 1}))
	if _, ok := find[actCommitDone](acts); !ok {
		t.Fatalf("commit: %q", kinds(acts))
	}
	if in, ok := find[actInstall](acts); !ok || !in.Immediate {
		t.Fatal("the epoch that replaced bob's leaf is not used at once")
	}
	cs.deliver(bob2)
	cs.deliver(bob)
	if !bob2.c.joined || !bob.c.removed {
		t.Fatalf("new bob joined %v, old bob removed %v", bob2.c.joined, bob.c.removed)
	}
	sameKeys(t, alice, bob2)
	r, _ := alice.mls.Roster(alice.c.ctx)
	if len(r) != 2 || r[1].Name != "bob" || r[1].Fingerprint == oldFP {
		t.Fatalf("roster %+v", r)
	}
}

func fingerprintOf(t *testing.T, x *tc) string {
	t.Helper()
	r, err := x.mls.Roster(x.c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range r {
		if e.Name == x.id {
			return e.Fingerprint
		}
	}
	t.Fatalf("%s not in its roster", x.id)
	return ""
}

// TestCoreRefusedCommit: a committer whose own check is bypassed (an open
// policy) adds mallory. bob, whose policy does not admit her, refuses the
// MoQ object, takes the CS's archived commit, refuses that too: an event,
// no install, and he stops sending; his keys stay those of the last good
// epoch.
func TestCoreRefusedCommit(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", strict(t))
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	before := bob.key()
	addByAlice(t, cs, alice, newTC(t, "mallory", nil))

	acts := bob.step(inObject{Track: trackCommit, Num: 1, Data: cs.commits[1]})
	wantActs(t, "MoQ commit refused", acts, "fetch commit 1")
	acts = bob.step(cs.answer(acts[0]))
	wantActs(t, "archived commit refused", acts, "sending false", "event refused")
	var re *mlsgroup.RefusedError
	if ev := refusals(acts); !errors.As(ev[0].Err, &re) || re.Name != "mallory" || !errors.Is(ev[0].Err, identity.ErrNotAdmitted) {
		t.Fatalf("event %v", ev)
	}
	if k := bob.key(); k.Epoch != before.Epoch || string(k.BaseKey) != string(before.BaseKey) {
		t.Fatalf("bob moved to epoch %d", k.Epoch)
	}
	// The next poll tries again (the archive is the authority), without a
	// second event.
	bob.now = bob.now.Add(bob.c.cfg.PollInterval)
	acts = cs.run(bob, bob.step(inTick{}))
	if len(refusals(acts)) != 0 || bob.c.epoch != before.Epoch || !bob.c.refused {
		t.Fatalf("after the poll: %q, epoch %d", kinds(acts), bob.c.epoch)
	}
}

// TestCoreJunkCommit: a commit object nobody can process arrives on MoQ
// for the current epoch (junk injected on the relay, or a buggy member).
// The member drops it, takes the CS's archived commit for that epoch and
// moves on; a second junk object for the same epoch is ignored.
func TestCoreJunkCommit(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	addByAlice(t, cs, alice, newTC(t, "carol", nil)) // bob misses it on MoQ

	junk := append([]byte(nil), cs.commits[1]...)
	junk[len(junk)-1] ^= 0xff // a broken signature
	acts := cs.run(bob, bob.step(inObject{Track: trackCommit, Num: 1, Data: junk}))
	if bob.c.epoch != 2 {
		t.Fatalf("bob at %d after junk then the archive: %q", bob.c.epoch, kinds(acts))
	}
	if _, ok := find[actFetch](acts); !ok {
		t.Fatalf("no archive fetch: %q", kinds(acts))
	}
	sameKeys(t, alice, bob)
	wantActs(t, "junk for a past epoch", bob.step(inObject{Track: trackCommit, Num: 1, Data: junk}))
}

// TestCoreStuckCommit: the commit the CS accepted cannot be processed by
// anyone (junk posted by an admitted member). Members raise EventStuck
// once, stay on the last good epoch, still able to send, and report it; the
// CS withdraws it, and the group moves on with the next commit for that
// epoch — for bob, who reported, and for alice, who learns it from a poll.
func TestCoreStuckCommit(t *testing.T) {
	cs := newFakeCS(t)
	alice, bob := newTC(t, "alice", nil), newTC(t, "bob", nil)
	create(t, cs, alice)
	addByAlice(t, cs, alice, bob)
	junk := append([]byte(nil), cs.commits[0]...)
	junk[len(junk)-1] ^= 0xff
	cs.commits[1], cs.epoch = junk, 2 // as the CS accepted it

	acts := cs.run(bob, bob.step(inObject{Track: trackCommit, Num: 1, Data: junk}))
	stuck := 0
	for _, a := range acts {
		if e, ok := a.(actEmit); ok && e.Event.Type == EventStuck {
			stuck++
		}
		if s, ok := a.(actSending); ok && !s.On {
			t.Fatal("a junk commit stopped sending")
		}
	}
	if stuck != 1 || bob.c.epoch != 1 {
		t.Fatalf("stuck events %d, epoch %d: %q", stuck, bob.c.epoch, kinds(acts))
	}
	if _, ok := find[actReportUnprocessable](acts); !ok || cs.epoch != 1 {
		t.Fatalf("not reported and withdrawn (CS at %d): %q", cs.epoch, kinds(acts))
	}
	// alice meets the junk too; the poll then shows the CS back at her epoch.
	cs.run(alice, alice.step(inObject{Track: trackCommit, Num: 1, Data: junk}))
	alice.now = alice.now.Add(alice.c.cfg.PollInterval)
	cs.run(alice, alice.step(inTick{}))
	if alice.c.failedAt[1] || alice.c.badMoQ[1] || alice.c.epoch != 1 {
		t.Fatalf("alice still holds the withdrawn commit (epoch %d)", alice.c.epoch)
	}
	// The group advances: carol is committed at epoch 1, and bob applies it
	// from MoQ.
	addByAlice(t, cs, alice, newTC(t, "carol", nil), bob)
	if bob.c.epoch != 2 {
		t.Fatalf("bob at %d after the replacement commit", bob.c.epoch)
	}
	sameKeys(t, alice, bob)
}
