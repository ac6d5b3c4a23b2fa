package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/etcdtest"
)

// TestEtcdStoreReplicas: three stores with their own etcd clients (three
// CS replicas) decide for the same group. 100 racing first joins create it
// exactly once and get distinct, gap-free sequence numbers; 30 racing
// commits for epoch 0 are accepted exactly once.
func TestEtcdStoreReplicas(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Shared(t)
	prefix := etcdtest.Prefix(t)
	var replicas []*EtcdStore
	for range 3 {
		s, err := OpenEtcdStore(ctx, EtcdConfig{Endpoints: c.Endpoints(), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		replicas = append(replicas, s)
	}
	const joins = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	seqs := map[uint64]int{}
	for i := range joins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := replicas[i%3].SubmitRequest(ctx, "g", fmt.Appendf(nil, "join-%d", i), true)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if r.Created {
				created++
			} else {
				seqs[r.Seq]++
			}
		}()
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d joins created the group, want exactly 1", created)
	}
	for seq := range uint64(joins - 1) {
		if seqs[seq] != 1 {
			t.Fatalf("sequence number %d assigned %d times (all: %v)", seq, seqs[seq], seqs)
		}
	}
	accepted := 0
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := replicas[i%3].SubmitCommit(ctx, "g", 0, fmt.Appendf(nil, "commit-%d", i), nil)
			if err != nil {
				t.Error(err)
				return
			}
			if r.Outcome == CommitAccepted {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("%d commits accepted for epoch 0, want exactly 1", accepted)
	}
	ob, err := replicas[2].Outbox(ctx, "g")
	if err != nil || len(ob) != joins {
		t.Fatalf("outbox has %d entries (%v), want %d", len(ob), err, joins)
	}
}

// TestEtcdStoreTooLarge: a decision larger than etcd's request limit is
// refused with ErrTooLarge and changes nothing.
func TestEtcdStoreTooLarge(t *testing.T) {
	ctx := context.Background()
	s := openEtcdTest(t)
	if _, err := s.SubmitRequest(ctx, "g", []byte("creator"), true); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{'x'}, 600<<10)
	// Commit and Welcome are each stored twice (outbox and archive):
	// 2.4 MB > 1.5 MiB.
	if _, err := s.SubmitCommit(ctx, "g", 0, big, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized commit: %v, want ErrTooLarge", err)
	}
	if _, err := s.SubmitRequest(ctx, "g", bytes.Repeat(big, 2), false); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized request: %v, want ErrTooLarge", err)
	}
	if e, _, err := s.State(ctx, "g"); err != nil || e != 0 {
		t.Fatalf("state after refusals: epoch %d, %v", e, err)
	}
	if ob, _ := s.Outbox(ctx, "g"); len(ob) != 0 {
		t.Fatalf("refused items queued: %d", len(ob))
	}
	// Half the limit fits.
	if r, err := s.SubmitCommit(ctx, "g", 0, big, nil); err != nil || r.Outcome != CommitAccepted {
		t.Fatalf("600 KB commit: %+v %v", r, err)
	}
}

// TestEtcdStoreLeaderKill: commits go on while the etcd raft leader is
// killed with SIGKILL; no decision is lost or made twice.
func TestEtcdStoreLeaderKill(t *testing.T) {
	ctx := context.Background()
	c := etcdtest.Start(t, 3)
	s, err := OpenEtcdStore(ctx, EtcdConfig{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.SubmitRequest(ctx, "g", []byte("creator"), true); err != nil {
		t.Fatal(err)
	}
	const commits = 40
	var longest time.Duration
	for e := range uint64(commits) {
		if e == commits/2 {
			i, err := c.Leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c.Members[i].Kill()
			t.Logf("killed etcd leader %s before commit %d", c.Members[i].Name, e)
		}
		start := time.Now()
		r, err := s.SubmitCommit(ctx, "g", e, fmt.Appendf(nil, "c%d", e), nil)
		if err != nil || r.Outcome != CommitAccepted || r.Epoch != e+1 {
			t.Fatalf("commit %d: %+v %v", e, r, err)
		}
		longest = max(longest, time.Since(start))
	}
	ob, err := s.Outbox(ctx, "g")
	if err != nil || len(ob) != commits {
		t.Fatalf("outbox: %d entries, %v", len(ob), err)
	}
	for i, e := range ob {
		if e.Num != uint64(i) {
			t.Fatalf("outbox[%d] is the commit of epoch %d", i, e.Num)
		}
	}
	t.Logf("longest commit across the leader kill: %v", longest)
}

// FuzzEtcdState: the group record read from etcd (written by any replica,
// or by whoever else can write the prefix) decodes or fails with an
// error, and a decoded record encodes back to the same bytes.
func FuzzEtcdState(f *testing.F) {
	st := etcdState{groupState: groupState{Epoch: 7, NextReqSeq: 3}, NextOutboxID: 12}
	f.Add([]byte(st.marshal()))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := unmarshalEtcdState(data)
		if err != nil {
			return
		}
		if got := st.marshal(); got != string(data) {
			t.Fatalf("re-encoded %x, read %x", got, data)
		}
	})
}
