package group

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestJoinLeaveMedia(t *testing.T) {
	e := newEnv(t)
	sess := e.session()
	alice := e.member("alice", "room", sess, nil)
	bob := e.member("bob", "room", e.session(), nil)
	carol := e.member("carol", "room", sess, nil)
	join(t, alice)
	if alice.Epoch() != 0 {
		t.Fatalf("creator at epoch %d", alice.Epoch())
	}
	join(t, bob)
	join(t, carol)
	all := []*Member{alice, bob, carol}
	ep, _ := converge(t, 2, all...)
	t.Logf("3 members at epoch %d", ep)
	for _, m := range all {
		t.Logf("%s: %+v", m.Identity(), m.Stats())
	}
	for i, m := range all {
		var others []*Member
		for _, o := range all {
			if o != m {
				others = append(others, o)
			}
		}
		media(t, m, uint64(i), others, nil)
	}

	// bob leaves: a remaining member commits his proposal.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bob.Leave(ctx); err != nil {
		t.Fatalf("bob leave: %v", err)
	}
	ev := waitEvent(t, bob, EventRemoved)
	t.Logf("bob removed at epoch %d", ev.Epoch)
	ep2, _ := converge(t, ep+1, alice, carol)
	media(t, alice, 0, []*Member{carol}, []*Member{bob})
	if _, err := bob.Stream(5); err == nil {
		st, _ := bob.Stream(6)
		if _, err := st.Seal(nil, nil, []byte("x")); err == nil {
			t.Fatal("removed member could still seal")
		}
	}

	dave := e.member("dave", "room", sess, nil)
	join(t, dave)
	rest := []*Member{alice, carol, dave}
	ep3, _ := converge(t, ep2+1, rest...)
	t.Logf("after leave epoch %d, after dave joined %d", ep2, ep3)
	media(t, dave, 3, []*Member{alice, carol}, []*Member{bob})
	media(t, carol, 1, []*Member{alice, dave}, []*Member{bob})
}

func waitEvent(t *testing.T, m *Member, typ EventType) Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-m.Events():
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("%s: no %v event", m.Identity(), typ)
		}
	}
}

func TestCommitRace(t *testing.T) {
	e := newEnv(t)
	sess := e.session()
	manual := func(c *Config) { c.Manual = true }
	alice := e.member("alice", "race", sess, manual)
	bob := e.member("bob", "race", sess, manual)
	join(t, alice)
	// bob's join: commit it by hand.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- bob.Join(ctx)
	}()
	waitPending(t, alice, 1)
	if r, err := alice.Commit(context.Background()); err != nil || !r.Won {
		t.Fatalf("alice commit: %+v %v", r, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	converge(t, 1, alice, bob)

	// carol asks to join; alice and bob both commit her for the same epoch.
	carol := e.member("carol", "race", sess, manual)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- carol.Join(ctx)
	}()
	waitPending(t, alice, 1)
	waitPending(t, bob, 1)
	var wg sync.WaitGroup
	res := make([]CommitResult, 2)
	errs := make([]error, 2)
	for i, m := range []*Member{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = m.Commit(context.Background())
		}()
	}
	wg.Wait()
	t.Logf("alice %+v %v; bob %+v %v", res[0], errs[0], res[1], errs[1])
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	won, conflicts := 0, 0
	for _, r := range res {
		if r.Won {
			won++
		}
		conflicts += r.Conflicts
	}
	if won != 1 || conflicts != 1 {
		t.Fatalf("want exactly one winner and one 409, got won=%d conflicts=%d", won, conflicts)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ep, _ := converge(t, 2, alice, bob, carol)
	if ep != 2 {
		t.Fatalf("epoch %d, want 2", ep)
	}
	media(t, bob, 1, []*Member{alice, carol}, nil)
}

func waitPending(t *testing.T, m *Member, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.PendingJoins() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s never saw %d pending joins", m.Identity(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventsClosedOnClose(t *testing.T) {
	e := newEnv(t)
	m := e.member("alice", "closing", e.session(), nil)
	join(t, m)
	idle := e.member("bob", "closing", nil, nil) // never joined
	for _, x := range []*Member{m, idle} {
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		// Buffered events are still delivered, then the channel is closed.
		timeout := time.After(10 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-x.Events():
				if !ok {
					break drain
				}
			case <-timeout:
				t.Fatalf("%s: Events not closed by Close", x.Identity())
			}
		}
		if _, err := x.Commit(context.Background()); err == nil && x == m {
			t.Fatal("Commit after Close succeeded")
		}
	}
}
