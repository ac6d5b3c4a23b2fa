package sframe

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/moqsframe/moqsframe/asm/aesgcm"
	"github.com/moqsframe/moqsframe/internal/impl"
	"github.com/moqsframe/moqsframe/internal/race"
)

// SealBatch must produce exactly what one Seal per item would, with
// consecutive counters, on every AES-GCM implementation and for the
// suites without a batch kernel.
func TestSealBatchMatchesSeal(t *testing.T) {
	t.Cleanup(func() { impl.Reset("aesgcm") }) // also after a Fatal
	for _, name := range aesgcm.Implementations() {
		if !impl.Select("aesgcm", name) {
			t.Fatalf("implementation %q not available", name)
		}
		for _, suite := range allSuites {
			base := randBytes(suite.KeySize())
			batched, _ := NewSender(suite, 42, base, WithCounter(250))
			single, _ := NewSender(suite, 42, base, WithCounter(250))
			r := NewReceiver()
			r.AddKey(suite, 42, base)
			var items []SealItem
			for i := range 33 {
				items = append(items, SealItem{Metadata: []byte(fmt.Sprint("md", i)), Plaintext: randBytes(i * 37)})
			}
			if failed := batched.SealBatch(items); failed != 0 {
				t.Fatalf("%s %v: %d failed", name, suite, failed)
			}
			for i, it := range items {
				want, _ := single.Seal(nil, it.Metadata, it.Plaintext)
				if !bytes.Equal(it.Out, want) {
					t.Fatalf("%s %v item %d differs from Seal", name, suite, i)
				}
				if pt, err := r.Open(nil, it.Metadata, it.Out); err != nil || !bytes.Equal(pt, it.Plaintext) {
					t.Fatalf("%s %v item %d: open %v", name, suite, i, err)
				}
			}
			if batched.Counter() != 250+33 {
				t.Fatalf("counter %d", batched.Counter())
			}
		}
	}
}

func TestSealBatchCounterLimit(t *testing.T) {
	s, _ := NewSender(AES128GCMSHA256_128, 1, randBytes(16), WithCounterLimit(5))
	items := make([]SealItem, 8)
	if failed := s.SealBatch(items); failed != 3 {
		t.Fatalf("%d failed, want 3", failed)
	}
	for i, it := range items {
		if (i >= 5) != errors.Is(it.Err, ErrCounterExhausted) {
			t.Fatalf("item %d: %v", i, it.Err)
		}
	}
	if failed := s.SealBatch(items[:1]); failed != 1 {
		t.Fatal("sealed past the limit")
	}
}

func TestSealBatchZeroAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	s, _ := NewSender(AES128GCMSHA256_128, 0x123, randBytes(16))
	items := make([]SealItem, 32)
	for i := range items {
		items[i] = SealItem{Metadata: randBytes(30), Plaintext: randBytes(160), Out: make([]byte, 0, 200)}
	}
	s.SealBatch(items)
	if a := testing.AllocsPerRun(100, func() { s.SealBatch(items) }); a != 0 {
		t.Fatalf("%v allocs per batch", a)
	}
}
