package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moqsframe/moqsframe/internal/etcdtest"
)

func storeImpls(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"mem": func(t *testing.T) Store { return NewMemStore() },
		"bolt": func(t *testing.T) Store {
			s, err := OpenBoltStore(filepath.Join(t.TempDir(), "cs.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"etcd": func(t *testing.T) Store { return openEtcdTest(t) },
	}
}

func TestMain(m *testing.M) { etcdtest.Main(m) }

// openEtcdTest opens an EtcdStore on the shared test cluster under a
// prefix of its own.
func openEtcdTest(t *testing.T) *EtcdStore {
	t.Helper()
	c := etcdtest.Shared(t)
	s, err := OpenEtcdStore(context.Background(), EtcdConfig{Endpoints: c.Endpoints(), Prefix: etcdtest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStoreSemantics(t *testing.T) {
	ctx := context.Background()
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			if _, err := s.Epoch(ctx, "g"); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("Epoch of unknown group: %v", err)
			}
			if _, err := s.SubmitRequest(ctx, "g", []byte("leave"), false); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("leave on unknown group: %v", err)
			}
			if _, err := s.SubmitCommit(ctx, "g", 0, []byte("c"), nil); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("commit on unknown group: %v", err)
			}
			r, err := s.SubmitRequest(ctx, "g", []byte("kpA"), true)
			if err != nil || !r.Created {
				t.Fatalf("first join: %+v %v", r, err)
			}
			// Creator retry is idempotent while at epoch 0.
			if r, _ := s.SubmitRequest(ctx, "g", []byte("kpA"), true); !r.Created {
				t.Fatal("creator retry not reported as Created")
			}
			r, _ = s.SubmitRequest(ctx, "g", []byte("kpB"), true)
			if r.Created || r.Seq != 0 {
				t.Fatalf("second join: %+v", r)
			}
			r, _ = s.SubmitRequest(ctx, "g", []byte("kpC"), true)
			if r.Created || r.Seq != 1 {
				t.Fatalf("third join: %+v", r)
			}
			c, err := s.SubmitCommit(ctx, "g", 0, []byte("c0"), []byte("w0"))
			if err != nil || c.Outcome != CommitAccepted || c.Epoch != 1 {
				t.Fatalf("commit 0: %+v %v", c, err)
			}
			if c, _ := s.SubmitCommit(ctx, "g", 0, []byte("c0-other"), nil); c.Outcome != CommitConflict || c.Epoch != 1 {
				t.Fatalf("competing commit 0: %+v", c)
			}
			if c, _ := s.SubmitCommit(ctx, "g", 0, []byte("c0"), []byte("w0")); c.Outcome != CommitDuplicate || c.Epoch != 1 {
				t.Fatalf("retried commit 0: %+v", c)
			}
			if c, _ := s.SubmitCommit(ctx, "g", 5, []byte("c5"), nil); c.Outcome != CommitConflict {
				t.Fatalf("future commit: %+v", c)
			}
			// After epoch 0 the creator's request is an ordinary request.
			if r, _ := s.SubmitRequest(ctx, "g", []byte("kpA"), true); r.Created {
				t.Fatal("creator replay after epoch 0 reported Created")
			}
			ob, err := s.Outbox(ctx, "g")
			if err != nil || len(ob) != 4 {
				t.Fatalf("outbox: %d entries, %v", len(ob), err)
			}
			want := []OutboxEntry{
				{Kind: OutboxRequest, Num: 0, Payload: []byte("kpB")},
				{Kind: OutboxRequest, Num: 1, Payload: []byte("kpC")},
				{Kind: OutboxCommit, Num: 0, Payload: []byte("c0"), Welcome: []byte("w0")},
				{Kind: OutboxRequest, Num: 2, Payload: []byte("kpA")},
			}
			for i, e := range ob {
				if e.Kind != want[i].Kind || e.Num != want[i].Num || string(e.Payload) != string(want[i].Payload) || string(e.Welcome) != string(want[i].Welcome) {
					t.Fatalf("outbox[%d] = %+v, want %+v", i, e, want[i])
				}
				if i > 0 && e.ID <= ob[i-1].ID {
					t.Fatal("outbox IDs not increasing")
				}
			}
			pg, _ := s.PendingGroups(ctx)
			if len(pg) != 1 || pg[0] != "g" {
				t.Fatalf("PendingGroups = %v", pg)
			}
			for _, e := range ob {
				if err := s.Ack(ctx, "g", e.ID); err != nil {
					t.Fatal(err)
				}
			}
			if ob, _ := s.Outbox(ctx, "g"); len(ob) != 0 {
				t.Fatalf("outbox after ack: %d", len(ob))
			}
			if pg, _ := s.PendingGroups(ctx); len(pg) != 0 {
				t.Fatalf("PendingGroups after ack = %v", pg)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Epoch(ctx, "g"); !errors.Is(err, ErrStoreClosed) {
				t.Fatalf("Epoch after Close: %v", err)
			}
		})
	}
}

func TestStoreConcurrentCAS(t *testing.T) {
	ctx := context.Background()
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			const n = 50
			var created, accepted sync.WaitGroup
			var mu sync.Mutex
			nCreated, nAccepted := 0, 0
			created.Add(n)
			for i := range n {
				go func() {
					defer created.Done()
					r, err := s.SubmitRequest(ctx, "g", []byte{byte(i), 'k'}, true)
					if err != nil {
						t.Error(err)
						return
					}
					if r.Created {
						mu.Lock()
						nCreated++
						mu.Unlock()
					}
				}()
			}
			created.Wait()
			accepted.Add(n)
			for i := range n {
				go func() {
					defer accepted.Done()
					c, err := s.SubmitCommit(ctx, "g", 0, []byte{byte(i), 'c'}, nil)
					if err != nil {
						t.Error(err)
						return
					}
					if c.Outcome == CommitAccepted {
						mu.Lock()
						nAccepted++
						mu.Unlock()
					}
				}()
			}
			accepted.Wait()
			if nCreated != 1 || nAccepted != 1 {
				t.Fatalf("created %d, accepted %d; want exactly 1 each", nCreated, nAccepted)
			}
		})
	}
}

func TestBoltStoreReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cs.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SubmitRequest(ctx, "g", []byte("a"), true)
	s.SubmitRequest(ctx, "g", []byte("b"), true)
	s.SubmitCommit(ctx, "g", 0, []byte("c0"), []byte("w0"))
	s.SubmitCommit(ctx, "g", 1, []byte("c1"), nil)
	if _, err := OpenBoltStore(path); err == nil {
		t.Fatal("a second opener got the database while it was open")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e, err := s.Epoch(ctx, "g"); err != nil || e != 2 {
		t.Fatalf("epoch after reopen = %d, %v; want 2", e, err)
	}
	ob, _ := s.Outbox(ctx, "g")
	if len(ob) != 3 || string(ob[1].Welcome) != "w0" || ob[2].Welcome != nil {
		t.Fatalf("outbox after reopen: %+v", ob)
	}
	if c, _ := s.SubmitCommit(ctx, "g", 1, []byte("c1"), nil); c.Outcome != CommitDuplicate {
		t.Fatalf("duplicate detection lost across reopen: %+v", c)
	}
	if r, _ := s.SubmitRequest(ctx, "g", []byte("d"), true); r.Seq != 1 {
		t.Fatalf("request seq after reopen = %d, want 1", r.Seq)
	}
}
