package impl

import (
	"slices"
	"sync/atomic"
	"testing"
)

func TestSelectReset(t *testing.T) {
	var fast, mid, gone atomic.Bool
	fast.Store(true)
	mid.Store(true)
	Register("impltest", "fast", &fast)
	Register("impltest", "mid", &mid)
	Register("impltest", "gone", &gone) // not supported by this "CPU"
	RegisterBase("impltest", "base")
	t.Cleanup(func() { Reset("impltest") })

	if got, want := List("impltest"), []string{"fast", "mid", "gone"}; !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if got, want := Available("impltest"), []string{"fast", "mid", "base"}; !slices.Equal(got, want) {
		t.Fatalf("Available = %q, want %q", got, want)
	}
	if !slices.Contains(Packages(), "impltest") {
		t.Fatalf("Packages = %q", Packages())
	}
	if Selected("impltest") != "fast" {
		t.Fatalf("Selected = %q", Selected("impltest"))
	}
	for _, name := range Available("impltest") {
		if !Select("impltest", name) {
			t.Fatalf("Select(%q) = false", name)
		}
		if Selected("impltest") != name {
			t.Fatalf("after Select(%q), Selected = %q", name, Selected("impltest"))
		}
	}
	Select("impltest", "mid")
	if Select("impltest", "gone") || Select("impltest", "nope") {
		t.Fatal("Select of an unavailable implementation succeeded")
	}
	if Selected("impltest") != "mid" || gone.Load() {
		t.Fatal("a failed Select changed the selection")
	}
	if !Select("impltest", "") || Selected("impltest") != "base" {
		t.Fatal(`Select("") did not select the base`)
	}
	Reset("impltest")
	if !fast.Load() || !mid.Load() || gone.Load() {
		t.Fatal("Reset did not restore availability")
	}
}
