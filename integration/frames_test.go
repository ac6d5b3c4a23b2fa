package integration

import (
	"bytes"
	"testing"

	"github.com/moqsframe/moqsframe/sidecar"
)

// frameID is an object's MoQ identity within a track.
type frameID struct{ group, object uint64 }

// checkFrames asserts that got holds exactly the frames of want, byte-exact,
// each once. MoQ sends every group on its own stream, and streams may be
// read in any order (moqtransport v0.5.0 bug #5), so only the order within
// a group is checked.
func checkFrames(t *testing.T, got []sidecar.Record, want map[frameID][]byte) {
	t.Helper()
	seen := map[frameID]bool{}
	last := map[uint64]uint64{} // group -> last object ID
	for _, r := range got {
		id := frameID{r.Group, r.ObjectID}
		w, ok := want[id]
		switch {
		case !ok:
			t.Fatalf("unexpected frame %d/%d", r.Group, r.ObjectID)
		case seen[id]:
			t.Fatalf("frame %d/%d delivered twice", r.Group, r.ObjectID)
		case !bytes.Equal(r.Payload, w):
			t.Fatalf("frame %d/%d: %d bytes differ from the %d sent", r.Group, r.ObjectID, len(r.Payload), len(w))
		}
		if prev, ok := last[r.Group]; ok && r.ObjectID <= prev {
			t.Fatalf("group %d: object %d after %d", r.Group, r.ObjectID, prev)
		}
		seen[id], last[r.Group] = true, r.ObjectID
	}
	if len(seen) != len(want) {
		t.Fatalf("%d of %d frames arrived", len(seen), len(want))
	}
}
