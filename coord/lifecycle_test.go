package coord

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
)

// leaveFrom2 is a leave request body: a Remove proposal sent by leaf 2
// (wiretest's sender) in epoch.
func leaveFrom2(epoch uint64) []byte {
	return wiretest.Handshake("room", epoch, 2, "self-remove")
}

func wantStatus(t *testing.T, err error, code int) {
	t.Helper()
	var se *StatusError
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("got %v, want a %d answer", err, code)
	}
}

// TestRetireLastMember: the last member's retire request is refused while
// another identity is alive and has not left, and for an epoch the group
// has moved past; once the others left (or went silent) it retires the
// group, and the next join creates it afresh at epoch 0 with 201.
func TestRetireLastMember(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, nil)
	ctx := context.Background()
	alice, bob, carol, dave := cs.client(t, "alice"), cs.client(t, "bob"), cs.client(t, "carol"), cs.client(t, "dave")
	if created, err := alice.Join(ctx, "room", cs.keyPackage(t, "alice", "")); err != nil || !created {
		t.Fatal(created, err)
	}
	if _, err := bob.Join(ctx, "room", cs.keyPackage(t, "bob", "")); err != nil {
		t.Fatal(err)
	}
	if err := alice.Commit(ctx, "room", 0, wiretest.Commit("room", 0, "add bob"), nil); err != nil {
		t.Fatal(err)
	}
	if err := alice.Heartbeat(ctx, "room", 1, 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := bob.Heartbeat(ctx, "room", 1, 2, "bob"); err != nil {
		t.Fatal(err)
	}
	err := alice.Retire(ctx, "room", 1, 0, "")
	if !errors.Is(err, ErrRetireRefused) {
		t.Fatalf("retire with bob alive: %v", err)
	}
	wantStatus(t, err, http.StatusConflict)
	// dave, admitted but not in the group, cannot retire it either.
	if err := dave.Retire(ctx, "room", 1, 0, ""); !errors.Is(err, ErrRetireRefused) {
		t.Fatalf("retire by dave: %v", err)
	}
	// bob leaves: his leaf no longer keeps the group.
	if err := bob.Leave(ctx, "room", leaveFrom2(1)); err != nil {
		t.Fatal(err)
	}
	if err := bob.Heartbeat(ctx, "room", 1, 2, ""); err != nil { // a leaving member still beats
		t.Fatal(err)
	}
	if err := alice.Retire(ctx, "room", 0, 0, ""); !errors.Is(err, ErrRetireRefused) {
		t.Fatalf("retire for a past epoch: %v", err)
	}
	if err := alice.Retire(ctx, "room", 1, 0, ""); err != nil {
		t.Fatalf("retire by the last member: %v", err)
	}
	if _, _, err := alice.State(ctx, "room"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("state of a retired group: %v", err)
	}
	if _, err := alice.CommitAt(ctx, "room", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("archive of a retired group: %v", err)
	}
	if err := bob.Retire(ctx, "room", 1, 2, ""); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("second retire: %v", err)
	}
	if err := bob.Heartbeat(ctx, "room", 1, 2, ""); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("heartbeat to a retired group: %v", err)
	}
	// carol (whose earlier join would have been pending) creates it again.
	if created, err := carol.Join(ctx, "room", cs.keyPackage(t, "carol", "")); err != nil || !created {
		t.Fatalf("join after retirement: created=%v %v", created, err)
	}
	if e, n, err := carol.State(ctx, "room"); err != nil || e != 0 || n != 0 {
		t.Fatalf("new group state %d %d %v", e, n, err)
	}
	m := cs.srv.Metrics()
	if m.Retired("last_member") != 1 || m.Retired("silent") != 0 {
		t.Errorf("retired: last_member %d silent %d", m.Retired("last_member"), m.Retired("silent"))
	}
}

// TestLifecycleAuth: outsiders are refused on the lifecycle endpoints like
// everywhere, and a member cannot speak for another identity.
func TestLifecycleAuth(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, nil)
	ctx := context.Background()
	alice := cs.client(t, "alice")
	if _, err := alice.Join(ctx, "room", cs.keyPackage(t, "alice", "")); err != nil {
		t.Fatal(err)
	}
	hb := mustMarshal(t, &wire.EpochAck{GroupID: []byte("room"), Epoch: 0, Leaf: 0, Identity: []byte("bob")})
	for _, path := range []string{"/v1/groups/room/heartbeats", "/v1/groups/room/retire"} {
		if code, rb, _ := cs.raw(t, "alice", "POST", path, hb); code != http.StatusForbidden || rb.Error != ReasonAckIdentityMismatch {
			t.Errorf("%s claiming bob: %d %+v", path, code, rb)
		}
		// "other" admits only bob: alice is not admitted to it, nor eve anywhere.
		if code, rb, _ := cs.raw(t, "eve", "POST", path, hb); code != http.StatusForbidden || rb.Error != ReasonNotAdmitted {
			t.Errorf("%s by eve: %d %+v", path, code, rb)
		}
	}
	if code, rb, _ := cs.raw(t, "eve", "GET", "/v1/groups/room/liveness", nil); code != http.StatusForbidden || rb.Error != ReasonNotAdmitted {
		t.Errorf("liveness by eve: %d %+v", code, rb)
	}
	if err := alice.Heartbeat(ctx, "room", 5, 0, ""); err == nil {
		t.Error("heartbeat for an undecided epoch accepted")
	} else {
		wantStatus(t, err, http.StatusBadRequest)
	}
	if _, err := cs.client(t, "bob").Liveness(ctx, "other"); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("liveness of an unknown group: %v", err)
	}
	// The CS stamps the caller's name: bob's heartbeat claiming alice's
	// leaf is a record for bob at leaf 0, not for alice.
	if err := cs.client(t, "bob").Heartbeat(ctx, "room", 0, 0, ""); err != nil {
		t.Fatal(err)
	}
	rep, err := alice.Liveness(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Members) != 2 || rep.Members[0].Identity != "alice" || rep.Members[1].Identity != "bob" || rep.Members[1].Leaf != 0 {
		t.Fatalf("records %+v", rep.Members)
	}
}

// TestLivenessReport: silence is counted per (identity, leaf) by the CS's
// clock; after a time in which nobody of the group was heard, everyone
// gets a fresh timeout.
func TestLivenessReport(t *testing.T) {
	cs := newAuthCS(t, roomPolicy, nil)
	ctx := context.Background()
	alice, bob := cs.client(t, "alice"), cs.client(t, "bob")
	if _, err := alice.Join(ctx, "room", cs.keyPackage(t, "alice", "")); err != nil {
		t.Fatal(err)
	}
	beat := func(c *Client, leaf uint32) {
		t.Helper()
		if err := c.Heartbeat(ctx, "room", 0, leaf, ""); err != nil {
			t.Fatal(err)
		}
	}
	silence := func() map[string]time.Duration {
		t.Helper()
		rep, err := bob.Liveness(ctx, "room")
		if err != nil {
			t.Fatal(err)
		}
		if rep.TimeoutMS != DefaultLivenessTimeout.Milliseconds() || rep.Epoch != 0 {
			t.Fatalf("report %+v", rep)
		}
		out := map[string]time.Duration{}
		for _, m := range rep.Members {
			out[m.Identity+"@"+string(rune('0'+m.Leaf))] = m.Silent()
		}
		return out
	}
	beat(alice, 0)
	beat(bob, 1)
	cs.clock.Advance(10 * time.Second)
	beat(alice, 0)
	if s := silence(); s["alice@0"] != 0 || s["bob@1"] != 10*time.Second || len(s) != 2 {
		t.Fatalf("after 10 s: %v", s)
	}
	// Nobody heard for longer than the timeout (a partition between the CS
	// and everyone): alice's first heartbeat after it restarts the count
	// for bob too, who has not been heard yet.
	cs.clock.Advance(DefaultLivenessTimeout + time.Second)
	beat(alice, 0)
	cs.clock.Advance(2 * time.Second)
	if s := silence(); s["alice@0"] != 2*time.Second || s["bob@1"] != 2*time.Second {
		t.Fatalf("after the group's silence: %v", s)
	}
	if text := metricsText(t, cs.srv.Metrics()); !strings.Contains(text, "sframe_cs_heartbeats_total 4\n") {
		t.Errorf("4 heartbeats not counted:\n%s", text)
	}
}

// TestRetireSilentGroup: a join request to a group of which no member was
// heard for the timeout retires it and creates it afresh (201); within the
// timeout it is queued as usual. A restarted CS counts from its start.
func TestRetireSilentGroup(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			defer st.Close()
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			timeout := 10 * time.Second
			cfg := func(c *Config) { c.Now, c.LivenessTimeout = clock.Now, timeout }
			cs := newTestCS(t, st, cfg)
			ctx := context.Background()
			c := cs.client
			if created, err := c.Join(ctx, "g", wiretest.KeyPackage("A")); err != nil || !created {
				t.Fatal(created, err)
			}
			clock.Advance(timeout - time.Second)
			if created, err := c.Join(ctx, "g", wiretest.KeyPackage("B")); err != nil || created {
				t.Fatalf("join within the timeout of the creation: created=%v %v", created, err)
			}
			if err := c.Heartbeat(ctx, "g", 0, 0, "A"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(timeout - time.Second)
			if created, err := c.Join(ctx, "g", wiretest.KeyPackage("C")); err != nil || created {
				t.Fatalf("join within the timeout of a heartbeat: created=%v %v", created, err)
			}
			// A leaf that left does not keep the group.
			if err := c.Leave(ctx, "g", wiretest.Handshake("g", 0, 2, "x")); err != nil {
				t.Fatal(err)
			}
			if err := c.Heartbeat(ctx, "g", 0, 2, "A"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(2 * time.Second)
			if created, err := c.Join(ctx, "g", wiretest.KeyPackage("D")); err != nil || !created {
				t.Fatalf("join after the timeout: created=%v %v", created, err)
			}
			if n := cs.srv.Metrics().Retired("silent"); n != 1 {
				t.Fatalf("retired silent %d", n)
			}
			if _, err := c.RequestAt(ctx, "g", 0); !errors.Is(err, ErrNotFound) {
				t.Fatalf("old requests archived: %v", err)
			}
			// A CS restarted on the same store has heard nobody: it waits
			// a whole timeout from its start before calling the group silent.
			clock.Advance(time.Hour)
			cs2 := newTestCS(t, st, cfg)
			clock.Advance(timeout - time.Second)
			if created, err := cs2.client.Join(ctx, "g", wiretest.KeyPackage("E")); err != nil || created {
				t.Fatalf("join to a restarted CS: created=%v %v", created, err)
			}
			clock.Advance(time.Second)
			if created, err := cs2.client.Join(ctx, "g", wiretest.KeyPackage("F")); err != nil || !created {
				t.Fatalf("join a timeout after the restart: created=%v %v", created, err)
			}
			// Negative: silence never retires.
			cs3 := newTestCS(t, st, func(c *Config) { c.Now, c.LivenessTimeout = clock.Now, -1 })
			clock.Advance(time.Hour)
			if created, err := cs3.client.Join(ctx, "g", wiretest.KeyPackage("G")); err != nil || created {
				t.Fatalf("join with silence retirement off: created=%v %v", created, err)
			}
		})
	}
}
