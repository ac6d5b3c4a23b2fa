package coord

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/moqsframe/moqsframe/coord/store"
)

// TestArchive: decided items are served by the catch-up endpoints, from
// both stores (the stores' own archive tests are in package store).
func TestArchive(t *testing.T) {
	for name, open := range storeImpls(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := open(t)
			defer st.Close()
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
			if r, err := st.SubmitCommit(ctx, "g", 0, []byte("c0"), []byte("w0")); err != nil || r.Outcome != store.CommitDuplicate {
				t.Fatal(r, err)
			}
			if _, err := st.SubmitCommit(ctx, "g", 1, []byte("c1"), []byte("w1")); err != nil {
				t.Fatal(err)
			}
			check := func(got []byte, err error, want string) {
				t.Helper()
				if err != nil || !bytes.Equal(got, []byte(want)) {
					t.Fatalf("got %q %v, want %q", got, err, want)
				}
			}

			srv, err := NewServer(Config{Store: st, Forwarder: &Recorder{}})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewTLSServer(srv)
			defer hs.Close()
			cl, _ := NewClient(hs.URL, hs.Client())
			got, err := cl.CommitAt(ctx, "g", 1)
			check(got, err, "c1")
			got, err = cl.WelcomeAt(ctx, "g", 0)
			check(got, err, "w0")
			got, err = cl.RequestAt(ctx, "g", 0)
			check(got, err, "join-1")
			if _, err := cl.CommitAt(ctx, "g", 7); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing commit over HTTP: %v", err)
			}
			if e, n, err := cl.State(ctx, "g"); err != nil || e != 2 || n != 1 {
				t.Fatalf("State over HTTP: %d %d %v", e, n, err)
			}
		})
	}
}
