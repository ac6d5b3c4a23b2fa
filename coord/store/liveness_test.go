package store

import (
	"context"
	"testing"
	"time"
)

// TestEtcdSharedLiveness: what one replica hears, another reads; the
// newest record of a leaf wins; retiring the group removes its records.
func TestEtcdSharedLiveness(t *testing.T) {
	ctx := context.Background()
	a := openEtcdTest(t)
	// A second replica: its own client on the same cluster and prefix.
	b, err := OpenEtcdStore(ctx, EtcdConfig{Endpoints: a.cli.Endpoints(), Prefix: a.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.SubmitRequest(ctx, "g", []byte("join"), true); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	for _, h := range []Heard{
		{Identity: "alice", Leaf: 0, Epoch: 3, At: t0},
		{Identity: "bob/x", Leaf: 1, Epoch: 4, At: t0.Add(time.Second)},
		{Identity: "alice", Leaf: 0, Epoch: 5, At: t0.Add(2 * time.Second)},
		{Identity: "carol", Leaf: 2, At: t0.Add(3 * time.Second), Left: true},
	} {
		if err := a.ShareHeard(ctx, "g", h); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.LoadHeard(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Heard{
		"alice": {Identity: "alice", Leaf: 0, Epoch: 5, At: t0.Add(2 * time.Second)},
		"bob/x": {Identity: "bob/x", Leaf: 1, Epoch: 4, At: t0.Add(time.Second)},
		"carol": {Identity: "carol", Leaf: 2, At: t0.Add(3 * time.Second), Left: true},
	}
	if len(got) != len(want) {
		t.Fatalf("records %+v", got)
	}
	for _, h := range got {
		if w := want[h.Identity]; !h.At.Equal(w.At) || h.Leaf != w.Leaf || h.Epoch != w.Epoch || h.Left != w.Left {
			t.Errorf("%s: %+v, want %+v", h.Identity, h, w)
		}
	}
	if err := a.RetireGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.LoadHeard(ctx, "g"); err != nil || len(got) != 0 {
		t.Fatalf("after retiring: %+v, %v", got, err)
	}
}
