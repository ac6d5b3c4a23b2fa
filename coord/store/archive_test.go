package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestArchive: all stores archive decided items (not a losing commit),
// and the bbolt file keeps them across reopening.
func TestArchive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cs.db")
	bs, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]Store{"mem": NewMemStore(), "bolt": bs, "etcd": openEtcdTest(t)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			a := st.(Archive)
			if _, err := st.SubmitRequest(ctx, "g", []byte("creator"), true); err != nil {
				t.Fatal(err)
			}
			if _, err := st.SubmitRequest(ctx, "g", []byte("join-1"), true); err != nil {
				t.Fatal(err)
			}
			if _, err := st.SubmitCommit(ctx, "g", 0, []byte("c0"), nil); err != nil {
				t.Fatal(err)
			}
			// late Welcome
			if r, err := st.SubmitCommit(ctx, "g", 0, []byte("c0"), []byte("w0")); err != nil || r.Outcome != CommitDuplicate {
				t.Fatal(r, err)
			}
			if _, err := st.SubmitCommit(ctx, "g", 1, []byte("c1"), []byte("w1")); err != nil {
				t.Fatal(err)
			}
			// a losing commit is not archived
			if r, _ := st.SubmitCommit(ctx, "g", 1, []byte("other"), nil); r.Outcome != CommitConflict {
				t.Fatal(r)
			}
			check := func(got []byte, err error, want string) {
				t.Helper()
				if err != nil || !bytes.Equal(got, []byte(want)) {
					t.Fatalf("got %q %v, want %q", got, err, want)
				}
			}
			c, err := a.ArchivedCommit(ctx, "g", 0)
			check(c, err, "c0")
			c, err = a.ArchivedCommit(ctx, "g", 1)
			check(c, err, "c1")
			w, err := a.ArchivedWelcome(ctx, "g", 0)
			check(w, err, "w0")
			w, err = a.ArchivedWelcome(ctx, "g", 1)
			check(w, err, "w1")
			r, err := a.ArchivedRequest(ctx, "g", 0)
			check(r, err, "join-1")
			if _, err := a.ArchivedCommit(ctx, "g", 2); !errors.Is(err, ErrNotFound) {
				t.Fatalf("epoch 2: %v", err)
			}
			if _, err := a.ArchivedRequest(ctx, "nope", 0); !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("unknown group: %v", err)
			}
			e, n, err := a.State(ctx, "g")
			if err != nil || e != 2 || n != 1 {
				t.Fatalf("state %d %d %v", e, n, err)
			}

		})
	}
	bs.Close()
	bs, err = OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	c, err := bs.ArchivedCommit(context.Background(), "g", 1)
	if err != nil || string(c) != "c1" {
		t.Fatalf("after reopen: %q %v", c, err)
	}
}
