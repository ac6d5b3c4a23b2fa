package coord

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
	"github.com/moqsframe/moqsframe/internal/etcdtest"
)

// replica is one CS process of several sharing an etcd cluster: its own
// etcd client, election and recorder.
type replica struct {
	*testCS
	st     *store.EtcdStore
	leader *store.EtcdLeader
}

// leaderAndFollower starts replica a, waits until it forwards (leads),
// then starts replica b on the same etcd prefix.
func leaderAndFollower(t *testing.T) (a, b *replica) {
	t.Helper()
	c := etcdtest.Shared(t)
	prefix := etcdtest.Prefix(t)
	a = startReplica(t, c.Endpoints(), prefix, "a")
	waitFor(t, 10*time.Second, "a leading", func() bool { return a.leader.Leading() != nil })
	return a, startReplica(t, c.Endpoints(), prefix, "b")
}

func startReplica(t *testing.T, endpoints []string, prefix, name string) *replica {
	t.Helper()
	st, err := store.OpenEtcdStore(context.Background(), store.EtcdConfig{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	l := store.NewEtcdLeader(st, store.EtcdLeaderConfig{Name: name, TTL: 2 * time.Second})
	cs := newTestCS(t, st, func(c *Config) { c.Leader = l })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { cs.srv.RunForwarding(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		l.Close()
		st.Close()
	})
	return &replica{testCS: cs, st: st, leader: l}
}

// waitFor polls cond until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicasJoinRace: 100 first joins race through three replicas; one
// 201, and the elected replica forwards the 99 requests, in order.
func TestReplicasJoinRace(t *testing.T) {
	c := etcdtest.Shared(t)
	prefix := etcdtest.Prefix(t)
	var rs []*replica
	for i := range 3 {
		rs = append(rs, startReplica(t, c.Endpoints(), prefix, fmt.Sprint("r", i)))
	}
	waitFor(t, 10*time.Second, "a forwarder", func() bool {
		n := 0
		for _, r := range rs {
			if r.leader.Leading() != nil {
				n++
			}
		}
		return n == 1
	})
	const n = 100
	var wg sync.WaitGroup
	var created atomic.Int32
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := rs[i%3].client.Join(context.Background(), "race", wiretest.KeyPackage(fmt.Sprint("member-", i)))
			if err != nil {
				t.Error(err)
			}
			if c {
				created.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("%d joins got 201, want exactly one", created.Load())
	}
	// Normally one replica forwards all 99; on a loaded machine a lease can
	// lapse and another take over. Either way each replica forwards in
	// sequence order and together they forward every request.
	seen := map[uint64]bool{}
	waitFor(t, 20*time.Second, "99 forwarded requests", func() bool {
		seen = map[uint64]bool{}
		for _, r := range rs {
			for _, f := range r.rec.Track("request", "race") {
				seen[f.Num] = true
			}
		}
		return len(seen) == n-1
	})
	forwarders := 0
	for i, r := range rs {
		got := r.rec.Track("request", "race")
		if len(got) > 0 {
			forwarders++
		}
		for j := 1; j < len(got); j++ {
			if got[j].Num <= got[j-1].Num {
				t.Fatalf("replica %d forwarded seq %d after %d", i, got[j].Num, got[j-1].Num)
			}
		}
	}
	t.Logf("%d replica(s) forwarded the 99 requests", forwarders)
}

// TestReplicasForwarderTakeover: the forwarding replica loses its etcd
// connection without resigning (as if killed) while its outbox holds
// commits it could not forward; the other replica takes over within the
// lease and forwards the rest from the persisted position: every epoch
// once at least, in order, no gap.
func TestReplicasForwarderTakeover(t *testing.T) {
	a, b := leaderAndFollower(t)
	ctx := context.Background()
	if created, err := b.client.Join(ctx, "g", wiretest.KeyPackage("creator")); err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	// a forwards epochs 0..2, then its relay "breaks".
	a.rec.SetFail(func(track, _ string, num uint64) error {
		if track == "commit" && num >= 3 {
			return errors.New("relay unreachable")
		}
		return nil
	})
	const commits = 8
	for e := range uint64(commits) {
		if err := b.client.Commit(ctx, "g", e, wiretest.Commit("g", e, fmt.Sprint("c", e)), nil); err != nil {
			t.Fatalf("commit %d: %v", e, err)
		}
	}
	waitFor(t, 10*time.Second, "a forwarding epochs 0..2", func() bool { return len(a.rec.Track("commit", "g")) == 3 })
	if b.leader.Leading() != nil || a.leader.Leading() == nil {
		t.Fatal("b leads before a died")
	}
	// a dies: its etcd client goes away, its lease is not revoked.
	killed := time.Now()
	a.st.Client().Close()
	waitFor(t, 15*time.Second, "b forwarding the rest", func() bool {
		got := b.rec.Track("commit", "g")
		return len(got) > 0 && got[len(got)-1].Num == commits-1
	})
	took := time.Since(killed)
	seen := a.rec.Track("commit", "g")
	got := b.rec.Track("commit", "g")
	for i := 1; i < len(got); i++ {
		if got[i].Num != got[i-1].Num+1 {
			t.Fatalf("b forwarded epoch %d after %d", got[i].Num, got[i-1].Num)
		}
	}
	if first := got[0].Num; first > seen[len(seen)-1].Num+1 {
		t.Fatalf("gap: a forwarded up to epoch %d, b started at %d", seen[len(seen)-1].Num, first)
	}
	if b.leader.Leading() == nil {
		t.Fatal("b forwards without leading")
	}
	t.Logf("takeover after the forwarder's death: %v (lease 2 s); a forwarded epochs 0..%d, b %d..%d",
		took, seen[len(seen)-1].Num, got[0].Num, got[len(got)-1].Num)
}

// TestReplicasAck: an epoch acknowledgement posted to a replica that is
// not the forwarder is published by the forwarder.
func TestReplicasAck(t *testing.T) {
	a, b := leaderAndFollower(t)
	ctx := context.Background()
	if _, err := b.client.Join(ctx, "g", wiretest.KeyPackage("creator")); err != nil {
		t.Fatal(err)
	}
	if err := b.client.Ack(ctx, "g", 0, 3, "bob"); err != nil {
		t.Fatalf("ack via the replica that does not forward: %v", err)
	}
	waitFor(t, 10*time.Second, "the forwarder publishing the ack", func() bool { return len(a.rec.Track("ack", "g")) == 1 })
	if n := len(b.rec.Track("ack", "g")); n != 0 {
		t.Fatalf("the replica that does not forward published %d acks", n)
	}
	got := a.rec.Track("ack", "g")[0]
	if got.Num != 0 {
		t.Fatalf("ack forwarded for epoch %d, want 0", got.Num)
	}
}
