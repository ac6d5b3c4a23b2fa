package store

import (
	"context"
	"errors"
	"testing"
)

// TestRevertCommit: only the newest commit can be withdrawn; the group goes
// back to its epoch, the commit and its Welcome leave the archive, and the
// epoch takes a new commit. Both stores.
func TestRevertCommit(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			defer s.Close()
			rv, a := s.(Reverter), s.(Archive)
			if err := rv.RevertCommit(ctx, "g", 0); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("unknown group: %v", err)
			}
			if _, err := s.SubmitRequest(ctx, "g", []byte("creator"), true); err != nil {
				t.Fatal(err)
			}
			for e, c := range []string{"c0", "c1"} {
				if r, err := s.SubmitCommit(ctx, "g", uint64(e), []byte(c), []byte("w"+c)); err != nil || r.Outcome != CommitAccepted {
					t.Fatal(r, err)
				}
			}
			if err := rv.RevertCommit(ctx, "g", 0); !errors.Is(err, ErrNotNewest) {
				t.Fatalf("older commit: %v", err)
			}
			if err := rv.RevertCommit(ctx, "g", 1); err != nil {
				t.Fatal(err)
			}
			if e, err := s.Epoch(ctx, "g"); err != nil || e != 1 {
				t.Fatalf("epoch after revert %d %v", e, err)
			}
			if _, err := a.ArchivedCommit(ctx, "g", 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("withdrawn commit archived: %v", err)
			}
			if _, err := a.ArchivedWelcome(ctx, "g", 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("withdrawn welcome archived: %v", err)
			}
			if r, err := s.SubmitCommit(ctx, "g", 1, []byte("c1-new"), nil); err != nil || r.Outcome != CommitAccepted || r.Epoch != 2 {
				t.Fatalf("replacement: %v %v", r, err)
			}
		})
	}
}
