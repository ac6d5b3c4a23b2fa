package sidecar

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moqsframe/moqsframe/sframe"
)

// TestLossTracker feeds counter sequences of one or more senders and
// checks what is counted lost along the way and at Close.
func TestLossTracker(t *testing.T) {
	type obs struct {
		kid, ctr uint64
	}
	seq := func(kid uint64, ctrs ...uint64) []obs {
		out := make([]obs, len(ctrs))
		for i, c := range ctrs {
			out[i] = obs{kid, c}
		}
		return out
	}
	span := func(kid, from, to uint64) []obs {
		var out []obs
		for c := from; c <= to; c++ {
			out = append(out, obs{kid, c})
		}
		return out
	}
	cat := func(parts ...[]obs) []obs {
		var out []obs
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		in            []obs
		before, after uint64 // lost before Close, and in total after it
	}{
		{"in order", span(1, 0, 500), 0, 0},
		{"starts mid-stream", span(1, 1000, 1500), 0, 0},
		{"reordered within the window", seq(1, 0, 2, 1, 5, 3, 4, 6), 0, 0},
		{"reordered ahead of the first", seq(1, 10, 11, 8, 9, 12), 0, 0},
		{"gap still open at Close", seq(1, 0, 1, 4, 5), 0, 2},
		{"gap leaves the window", cat(seq(1, 0, 1), span(1, 4, 200)), 2, 2},
		{"jump past the window", seq(1, 0, 1, 500), 371, 371 + 127},
		{"late arrival after being counted", cat(seq(1, 0), span(1, 2, 200), seq(1, 1)), 1, 1},
		{"two senders", cat(seq(1, 0, 2), seq(2, 0, 1, 3), seq(1, 3)), 0, 2},
		{"oldest sender retired", cat(seq(1, 0, 3), seq(2, 0), seq(3, 0), seq(4, 0), seq(5, 0)), 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lost uint64
			lt := newLossTracker(128, func(n uint64) { lost += n })
			for _, o := range tc.in {
				lt.Observe("video", sframe.Header{KID: o.kid, CTR: o.ctr})
			}
			if lost != tc.before {
				t.Errorf("lost before Close = %d, want %d", lost, tc.before)
			}
			if m := lt.Missing(); m != tc.after-tc.before {
				t.Errorf("Missing() = %d, want %d", m, tc.after-tc.before)
			}
			lt.Close()
			if lost != tc.after {
				t.Errorf("lost after Close = %d, want %d", lost, tc.after)
			}
		})
	}
}

// TestDecryptCountsLossAndDuplicates: a decrypting sidecar given a
// sender's objects with three missing and two repeated counts exactly
// those, and delivers the rest once.
func TestDecryptCountsLossAndDuplicates(t *testing.T) {
	keys, err := NewStaticKeys(sframe.AES128GCMSHA256_128, bytes.Repeat([]byte{2}, 16))
	if err != nil {
		t.Fatal(err)
	}
	ns := []string{"example.org", "live"}
	sealed := &captureSink{}
	enc, _ := New(Config{Mode: Encrypt, Namespace: ns, Keys: keys, Sink: sealed})
	ctx := context.Background()
	for o := range 100 {
		if err := enc.Submit(ctx, "video", uint64(o/30), 0, uint64(o%30), []byte("frame")); err != nil {
			t.Fatal(err)
		}
	}
	enc.Close()
	opened := &captureSink{}
	dec, _ := New(Config{Mode: Decrypt, Namespace: ns, Keys: keys, Sink: opened, LossWindow: 64})
	for i, r := range sealed.recs {
		switch i {
		case 10, 50, 51: // lost on the way
			continue
		case 20, 70: // received twice
			dec.Submit(ctx, r.Track, r.Group, r.Subgroup, r.ObjectID, r.Payload)
		}
		dec.Submit(ctx, r.Track, r.Group, r.Subgroup, r.ObjectID, r.Payload)
	}
	dec.Close()
	if got := testutil.ToFloat64(dec.M.Lost); got != 3 {
		t.Errorf("lost %v, want 3", got)
	}
	if got := testutil.ToFloat64(dec.M.Duplicates); got != 2 {
		t.Errorf("duplicates %v, want 2", got)
	}
	if got := testutil.ToFloat64(dec.M.Errors); got != 0 {
		t.Errorf("errors %v, want 0", got)
	}
	if len(opened.recs) != 97 {
		t.Errorf("%d delivered, want 97", len(opened.recs))
	}
}
