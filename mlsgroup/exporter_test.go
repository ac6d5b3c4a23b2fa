package mlsgroup

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/moqsframe/moqsframe/keyschedule"
	"github.com/moqsframe/moqsframe/sframe"
)

// A Member is the keyschedule.Exporter of its group: one exporter label
// (keyschedule.ExporterLabel) for both key paths.
var _ keyschedule.Exporter = (*Member)(nil)

// TestExportEpochEqualsKeyState: keyschedule.ExportEpoch of a real member
// builds the same base key as the member's KeyState, in each epoch.
func TestExportEpochEqualsKeyState(t *testing.T) {
	ctx := context.Background()
	a, b := newMember(t, "alice"), newMember(t, "bob")
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(m *Member) {
		t.Helper()
		ks, err := m.KeyState(ctx, BaseKeyLen)
		if err != nil {
			t.Fatal(err)
		}
		ep, err := keyschedule.ExportEpoch(m, sframe.AES128GCMSHA256_128, ks.Epoch, int(ks.GroupSize), uint64(ks.LeafIndex))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ep.BaseKey, ks.BaseKey) || len(ep.BaseKey) != BaseKeyLen {
			t.Fatalf("%s epoch %d: ExportEpoch base key %x, KeyState %x", m.name, ks.Epoch, ep.BaseKey, ks.BaseKey)
		}
		// Another label is another secret.
		other, err := m.Export("SFrame 1.0 Other", nil, BaseKeyLen)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(other, ks.BaseKey) {
			t.Fatal("Export ignores the label")
		}
	}
	check(a)
	addAndCommit(t, a, b)
	check(a)
	check(b)

	c := newMember(t, "carol")
	if _, err := c.Export(keyschedule.ExporterLabel, nil, BaseKeyLen); !errors.Is(err, ErrNotMember) {
		t.Fatalf("non-member Export: %v, want ErrNotMember", err)
	}
}
