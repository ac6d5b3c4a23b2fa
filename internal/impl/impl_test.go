package impl

import (
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
)

// runs makes each run's package name new: Register is init-only and has no
// undo, so a second run (-count=2) under the same name would list twice.
var runs atomic.Int32

func TestSelectReset(t *testing.T) {
	pkg := "impltest" + strconv.Itoa(int(runs.Add(1)))
	var fast, mid, gone atomic.Bool
	fast.Store(true)
	mid.Store(true)
	Register(pkg, "fast", &fast)
	Register(pkg, "mid", &mid)
	Register(pkg, "gone", &gone) // not supported by this "CPU"
	RegisterBase(pkg, "base")
	t.Cleanup(func() { Reset(pkg) })

	if got, want := List(pkg), []string{"fast", "mid", "gone"}; !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if got, want := Available(pkg), []string{"fast", "mid", "base"}; !slices.Equal(got, want) {
		t.Fatalf("Available = %q, want %q", got, want)
	}
	if !slices.Contains(Packages(), pkg) {
		t.Fatalf("Packages = %q", Packages())
	}
	if Selected(pkg) != "fast" {
		t.Fatalf("Selected = %q", Selected(pkg))
	}
	for _, name := range Available(pkg) {
		if !Select(pkg, name) {
			t.Fatalf("Select(%q) = false", name)
		}
		if Selected(pkg) != name {
			t.Fatalf("after Select(%q), Selected = %q", name, Selected(pkg))
		}
	}
	Select(pkg, "mid")
	if Select(pkg, "gone") || Select(pkg, "nope") {
		t.Fatal("Select of an unavailable implementation succeeded")
	}
	if Selected(pkg) != "mid" || gone.Load() {
		t.Fatal("a failed Select changed the selection")
	}
	if !Select(pkg, "") || Selected(pkg) != "base" {
		t.Fatal(`Select("") did not select the base`)
	}
	Reset(pkg)
	if !fast.Load() || !mid.Load() || gone.Load() {
		t.Fatal("Reset did not restore availability")
	}
}
