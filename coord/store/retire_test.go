package store

import (
	"context"
	"errors"
	"testing"
)

// TestRetireGroup: a retired group is unknown everywhere (state, outbox,
// pending list, archive), and the next join creates it afresh at epoch 0
// with sequence 0, without the old creator's retry rule. Every store.
func TestRetireGroup(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			defer s.Close()
			rt, a := s.(Retirer), s.(Archive)
			if err := rt.RetireGroup(ctx, "g"); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("unknown group: %v", err)
			}
			if r, err := s.SubmitRequest(ctx, "g", []byte("creator"), true); err != nil || !r.Created {
				t.Fatal(r, err)
			}
			if _, err := s.SubmitRequest(ctx, "g", []byte("join"), true); err != nil {
				t.Fatal(err)
			}
			if r, err := s.SubmitCommit(ctx, "g", 0, []byte("c0"), []byte("w0")); err != nil || r.Outcome != CommitAccepted {
				t.Fatal(r, err)
			}
			if _, err := s.SubmitRequest(ctx, "other", []byte("o"), true); err != nil {
				t.Fatal(err)
			}
			if err := rt.RetireGroup(ctx, "g"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Epoch(ctx, "g"); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("epoch of a retired group: %v", err)
			}
			if _, err := s.SubmitRequest(ctx, "g", []byte("leave"), false); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("request to a retired group: %v", err)
			}
			if _, err := a.ArchivedCommit(ctx, "g", 0); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("archived commit of a retired group: %v", err)
			}
			if _, err := a.ArchivedRequest(ctx, "g", 0); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("archived request of a retired group: %v", err)
			}
			if p, err := s.PendingGroups(ctx); err != nil || len(p) != 0 {
				t.Fatalf("pending groups after retiring the only one with an outbox: %v %v", p, err)
			}
			if e, err := s.Epoch(ctx, "other"); err != nil || e != 0 {
				t.Fatalf("another group changed: %d %v", e, err)
			}
			// The old creator's bytes create the group again (a new group,
			// not a retry), and a second join is sequence 0.
			if r, err := s.SubmitRequest(ctx, "g", []byte("creator"), true); err != nil || !r.Created {
				t.Fatalf("recreate: %+v %v", r, err)
			}
			if r, err := s.SubmitRequest(ctx, "g", []byte("join2"), true); err != nil || r.Created || r.Seq != 0 {
				t.Fatalf("first join of the new group: %+v %v", r, err)
			}
			if r, err := s.SubmitCommit(ctx, "g", 0, []byte("c0-new"), nil); err != nil || r.Outcome != CommitAccepted || r.Epoch != 1 {
				t.Fatalf("first commit of the new group: %+v %v", r, err)
			}
		})
	}
}
