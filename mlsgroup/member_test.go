package mlsgroup

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/testpki"
)

// testPKI is the CA of every member in these tests; the policy admits
// any name it certifies.
var testPKI *testpki.PKI

func TestMain(m *testing.M) {
	testPKI = testpki.New()
	os.Exit(m.Run())
}

func newMember(t *testing.T, name string) *Member {
	t.Helper()
	return newMemberWith(t, name, identity.AllowAll())
}

func newMemberWith(t *testing.T, name string, p *identity.Policy) *Member {
	t.Helper()
	m, err := NewMember(testPKI.Issue(t, name), Authenticator{Verifier: testPKI.Verifier, Policy: p}, "room")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// assertSameKeys checks that all members are in epoch want and export the
// same SFrame base key, with distinct leaf indexes, and returns the key.
func assertSameKeys(t *testing.T, want uint64, members ...*Member) []byte {
	t.Helper()
	ctx := context.Background()
	var key []byte
	leaves := map[uint32]bool{}
	for i, m := range members {
		ks, err := m.KeyState(ctx, BaseKeyLen)
		if err != nil {
			t.Fatalf("%s export: %v", m.name, err)
		}
		if ks.Epoch != want {
			t.Fatalf("%s is in epoch %d, want %d", m.name, ks.Epoch, want)
		}
		if len(ks.BaseKey) != BaseKeyLen || bytes.Equal(ks.BaseKey, make([]byte, BaseKeyLen)) {
			t.Fatalf("%s: bad base key %x", m.name, ks.BaseKey)
		}
		if ks.Members != len(members) {
			t.Fatalf("%s sees %d members, want %d", m.name, ks.Members, len(members))
		}
		if ks.LeafIndex >= ks.GroupSize || ks.GroupSize&(ks.GroupSize-1) != 0 {
			t.Fatalf("%s: leaf %d, group size %d", m.name, ks.LeafIndex, ks.GroupSize)
		}
		if leaves[ks.LeafIndex] {
			t.Fatalf("leaf index %d used twice", ks.LeafIndex)
		}
		leaves[ks.LeafIndex] = true
		if i == 0 {
			key = ks.BaseKey
		} else if !bytes.Equal(ks.BaseKey, key) {
			t.Fatalf("epoch %d: %s exports %x, %s exports %x", want, members[0].name, key, m.name, ks.BaseKey)
		}
	}
	return key
}

// addAndCommit has committer add joiner (via its KeyPackage), confirms, lets
// the others process the commit, and the joiner join from the Welcome.
func addAndCommit(t *testing.T, committer, joiner *Member, others ...*Member) (commit, welcome []byte) {
	t.Helper()
	ctx := context.Background()
	kp, err := joiner.KeyPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := committer.AddMember(ctx, kp); err != nil {
		t.Fatal(err)
	}
	epoch, commit, err := committer.StageCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	welcome, err = committer.ConfirmCommit(ctx)
	if err != nil || welcome == nil {
		t.Fatalf("confirm: welcome=%d bytes, %v", len(welcome), err)
	}
	for _, o := range others {
		if err := o.ProcessCommit(ctx, epoch, commit); err != nil {
			t.Fatalf("%s process: %v", o.name, err)
		}
	}
	if joined, err := joiner.Join(ctx, welcome); err != nil || !joined {
		t.Fatalf("%s join: joined=%v err=%v", joiner.name, joined, err)
	}
	return commit, welcome
}

func TestJoinLeaveExport(t *testing.T) {
	ctx := context.Background()
	a, b, c, d, e := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol"), newMember(t, "dave"), newMember(t, "erin")
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	k0 := assertSameKeys(t, 0, a)
	addAndCommit(t, a, b)
	k1 := assertSameKeys(t, 1, a, b)

	// erin has a KeyPackage outstanding but the Welcome for carol is not hers.
	if _, err := e.KeyPackage(ctx); err != nil {
		t.Fatal(err)
	}
	_, wC := addAndCommit(t, a, c, b)
	if joined, err := e.Join(ctx, wC); joined || err != nil {
		t.Fatalf("erin joined from carol's Welcome: joined=%v err=%v", joined, err)
	}
	if joined, err := b.Join(ctx, wC); joined || err != nil {
		t.Fatalf("bob (a member) used a Welcome: joined=%v err=%v", joined, err)
	}
	k2 := assertSameKeys(t, 2, a, b, c)

	// bob leaves: his self-Remove goes on the RequestTrack; every member
	// processes it; carol (not the creator) commits it.
	prop, err := b.Leave(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Member{a, c} {
		if err := m.ProcessProposal(ctx, prop); err != nil {
			t.Fatalf("%s process leave proposal: %v", m.name, err)
		}
	}
	epoch, commit, err := c.StageCommit(ctx)
	if err != nil || epoch != 2 {
		t.Fatalf("stage: epoch %d, %v", epoch, err)
	}
	if w, err := c.ConfirmCommit(ctx); err != nil || w != nil {
		t.Fatalf("confirm remove: welcome %d bytes, %v", len(w), err)
	}
	if err := a.ProcessCommit(ctx, epoch, commit); err != nil {
		t.Fatal(err)
	}
	if err := b.ProcessCommit(ctx, epoch, commit); !errors.Is(err, ErrRemoved) || !b.Removed() {
		t.Fatalf("bob processing his removal: %v", err)
	}
	if _, err := b.KeyState(ctx, BaseKeyLen); !errors.Is(err, ErrRemoved) {
		t.Fatalf("bob export after removal: %v", err)
	}
	k3 := assertSameKeys(t, 3, a, c)

	// dave joins, committed by carol.
	addAndCommit(t, c, d, a)
	k4 := assertSameKeys(t, 4, a, c, d)

	// Our own commit coming back on the CommitTrack is stale; a gap is future.
	if err := c.ProcessCommit(ctx, 3, commit); !errors.Is(err, ErrStaleCommit) {
		t.Fatalf("own commit again: %v", err)
	}
	if err := c.ProcessCommit(ctx, 9, commit); !errors.Is(err, ErrFutureCommit) {
		t.Fatalf("future commit: %v", err)
	}
	seen := map[string]bool{}
	for _, k := range [][]byte{k0, k1, k2, k3, k4} {
		if seen[string(k)] {
			t.Fatal("base key repeated across epochs")
		}
		seen[string(k)] = true
	}
	r, err := d.Roster(ctx)
	if err != nil || len(r) != 3 {
		t.Fatalf("members: %v %v", r, err)
	}
	for _, e := range r {
		if e.Name == "bob" {
			t.Fatal("bob still listed")
		}
	}
}

// Two members stage competing commits for one epoch; the CS (real server,
// in-memory store, recording forwarder) accepts one; the loser discards,
// catches up from the CommitTrack and commits again in the next epoch.
func TestCompetingCommitsThroughCS(t *testing.T) {
	ctx := context.Background()
	rec := &coord.Recorder{}
	srv, err := coord.NewServer(coord.Config{Store: store.NewMemStore(), Forwarder: rec})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	cs, err := coord.NewClient(hs.URL, hs.Client())
	if err != nil {
		t.Fatal(err)
	}

	a, b, c := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol")
	join := func(m *Member) []byte {
		kp, err := m.KeyPackage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		created, err := cs.Join(ctx, "room", kp)
		if err != nil {
			t.Fatal(err)
		}
		if created {
			if err := m.Create(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return kp
	}
	lastRequest := func() []byte {
		reqs := rec.Track("request", "room")
		r, err := wire.UnmarshalRequest(reqs[len(reqs)-1].Data)
		if err != nil {
			t.Fatal(err)
		}
		return r.Body
	}
	// commitVia stages, submits, and on success confirms and sends the late Welcome.
	commitVia := func(m *Member) error {
		epoch, commit, err := m.StageCommit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.Commit(ctx, "room", epoch, commit, nil); err != nil {
			if derr := m.DiscardCommit(ctx); derr != nil {
				t.Fatal(derr)
			}
			return err
		}
		w, err := m.ConfirmCommit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if w != nil {
			if err := cs.Commit(ctx, "room", epoch, commit, w); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	}
	// apply feeds a member the CommitTrack from its epoch on.
	apply := func(m *Member) {
		for _, it := range rec.Track("commit", "room") {
			err := m.ProcessCommit(ctx, it.Num, it.Data)
			if err != nil && !errors.Is(err, ErrStaleCommit) {
				t.Fatalf("%s applying commit %d: %v", m.name, it.Num, err)
			}
		}
	}
	welcomeFor := func(m *Member) {
		for _, it := range rec.Track("welcome", "room") {
			if _, err := m.Join(ctx, it.Data); err != nil {
				t.Fatal(err)
			}
		}
	}

	join(a) // 201: alice creates
	join(b)
	if err := a.AddMember(ctx, lastRequest()); err != nil {
		t.Fatal(err)
	}
	if err := commitVia(a); err != nil {
		t.Fatal(err)
	}
	welcomeFor(b)
	assertSameKeys(t, 1, a, b)

	d := newMember(t, "dave")
	join(c)
	kpC := lastRequest()
	join(d)
	kpD := lastRequest()
	// alice adds carol, bob adds dave: both stage for epoch 1.
	if err := a.AddMember(ctx, kpC); err != nil {
		t.Fatal(err)
	}
	if err := b.AddMember(ctx, kpD); err != nil {
		t.Fatal(err)
	}
	ea, ca, err := a.StageCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eb, cb, err := b.StageCommit(ctx)
	if err != nil || ea != 1 || eb != 1 {
		t.Fatalf("staged epochs %d %d, %v", ea, eb, err)
	}
	if err := cs.Commit(ctx, "room", eb, cb, nil); err != nil {
		t.Fatalf("bob's commit: %v", err)
	}
	errA := cs.Commit(ctx, "room", ea, ca, nil)
	var conflict *coord.EpochConflictError
	if !errors.As(errA, &conflict) || conflict.Epoch != 2 {
		t.Fatalf("alice's competing commit: %v", errA)
	}
	if err := a.DiscardCommit(ctx); err != nil {
		t.Fatal(err)
	}
	wD, err := b.ConfirmCommit(ctx)
	if err != nil || wD == nil {
		t.Fatal(err)
	}
	if err := cs.Commit(ctx, "room", eb, cb, wD); err != nil {
		t.Fatal(err)
	}
	welcomeFor(d)
	welcomeFor(c) // carol's Welcome was never made: she must not have joined
	if _, err := c.KeyState(ctx, BaseKeyLen); !errors.Is(err, ErrNotMember) {
		t.Fatalf("carol should not be a member yet: %v", err)
	}
	apply(a) // alice catches up to epoch 2
	assertSameKeys(t, 2, a, b, d)

	// alice re-adds carol in epoch 2.
	if err := a.AddMember(ctx, kpC); err != nil {
		t.Fatal(err)
	}
	if err := commitVia(a); err != nil {
		t.Fatal(err)
	}
	apply(b)
	apply(d)
	welcomeFor(c)
	assertSameKeys(t, 3, a, b, c, d)
	if n := len(rec.Track("commit", "room")); n != 3 {
		t.Fatalf("%d commits on the CommitTrack, want 3", n)
	}

	// bob leaves through the CS: his self-Remove goes out on the
	// RequestTrack, every member stores it, dave commits it.
	prop, err := b.Leave(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Leave(ctx, "room", prop); err != nil {
		t.Fatalf("leave request: %v", err)
	}
	leaveReq := lastRequest()
	if !bytes.Equal(leaveReq, prop) {
		t.Fatal("RequestTrack does not carry bob's proposal")
	}
	for _, m := range []*Member{a, c, d} {
		if err := m.ProcessProposal(ctx, leaveReq); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	if err := commitVia(d); err != nil {
		t.Fatal(err)
	}
	apply(a)
	apply(c)
	commits := rec.Track("commit", "room")
	last := commits[len(commits)-1]
	if err := b.ProcessCommit(ctx, last.Num, last.Data); !errors.Is(err, ErrRemoved) {
		t.Fatalf("bob: %v", err)
	}
	assertSameKeys(t, 4, a, c, d)
	if e, err := cs.Epoch(ctx, "room"); err != nil || e != 4 {
		t.Fatalf("CS epoch %d, %v", e, err)
	}
}

// A member that staged a commit and lost the epoch must still process the
// winning commit. mls-go v1.6.0 overwrites the private keys of the stager's
// direct-path nodes when it stages, and DiscardPendingCommit does not restore
// them; the winner's path secret is encrypted to one of those nodes here.
func TestDiscardedCommitKeepsPathKeys(t *testing.T) {
	ctx := context.Background()
	a, b, c, d, e := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol"), newMember(t, "dave"), newMember(t, "erin")
	f, g := newMember(t, "frank"), newMember(t, "grace")
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	addAndCommit(t, a, b)
	addAndCommit(t, a, c, b)
	addAndCommit(t, a, d, b, c)
	// carol (leaf 2) commits: she now holds the key of the parent of leaves
	// 2 and 3, which is on alice's copath.
	addAndCommit(t, c, e, a, b, d)
	assertSameKeys(t, 4, a, b, c, d, e)

	kpF, err := f.KeyPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kpG, err := g.KeyPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddMember(ctx, kpF); err != nil {
		t.Fatal(err)
	}
	if err := c.AddMember(ctx, kpG); err != nil {
		t.Fatal(err)
	}
	epoch, winner, err := a.StageCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.StageCommit(ctx); err != nil {
		t.Fatal(err)
	}
	welcome, err := a.ConfirmCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DiscardCommit(ctx); err != nil {
		t.Fatal(err)
	}
	// A retry in the lost epoch may add grace again.
	if err := c.AddMember(ctx, kpG); err != nil {
		t.Fatalf("adding the same KeyPackage again in the epoch: %v", err)
	}
	for _, m := range []*Member{b, c, d, e} {
		if err := m.ProcessCommit(ctx, epoch, winner); err != nil {
			t.Fatalf("%s processing the winning commit: %v", m.name, err)
		}
	}
	if joined, err := f.Join(ctx, welcome); !joined || err != nil {
		t.Fatalf("frank join: %v %v", joined, err)
	}
	assertSameKeys(t, 5, a, b, c, d, e, f)
	// carol commits grace in the new epoch (her stored Add is obsolete).
	addAndCommit(t, c, g, a, b, d, e, f)
	assertSameKeys(t, 6, a, b, c, d, e, f, g)
}
