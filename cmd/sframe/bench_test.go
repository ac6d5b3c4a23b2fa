package main

import (
	"strings"
	"testing"

	"github.com/moqsframe/moqsframe/bench"
)

// TestPrintTargets: every goal reads its figure from the rows that measure
// it (the paired rows where a goal compares two things), with its verdict.
func TestPrintTargets(t *testing.T) {
	const gcm, ctr = "AES_128_GCM_SHA256_128", "AES_128_CTR_HMAC_SHA256_80"
	rows := []bench.Result{
		{Suite: gcm, Op: "seal", Size: 1200, Batch: 32, Path: "avx2", GBps: 6, Ratio: 2.1},
		{Suite: gcm, Op: "seal", Size: 1200, Batch: 32, Path: "generic", GBps: 2, Ratio: 0.9},
		{Suite: gcm, Op: "sframe-vs-aead", Size: 1200, Batch: 32, Path: "avx2", Ratio: 0.95},
		{Suite: gcm, Op: "sframe-vs-aead", Size: 1200, Batch: 32, Path: "generic", Ratio: 0.5},
		{Suite: ctr, Op: "seal", Size: 160, Batch: 1, Path: "ctr-hmac", GBps: 1},
		{Suite: ctr, Op: "seal-vs-ctr-hmac-stdlib", Size: 160, Batch: 1, Path: "ctr-hmac", Ratio: 2.5},
		{Suite: ctr, Op: "seal", Size: 1200, Batch: 1, Path: "ctr-hmac", GBps: 1},
		{Suite: ctr, Op: "seal-vs-sha256", Size: 1200, Batch: 1, Path: "ctr-hmac", Ratio: 0.8},
	}
	var out strings.Builder
	printTargets(&out, rows)
	for _, want := range []string{
		"suite 4 seal 1200 B batch 32  2.10x stdlib (target >= 2.0x) met [avx2]",
		"SFrame overhead over the raw AEAD at 1200 B, batch 32:  +5.3% (target <= 10%) met [avx2]",
		"suite 1 seal 160 B: 2.50x the crypto/aes CTR + crypto/hmac composition (target >= 2.0x) met",
		"suite 1 seal  1200 B: 80% of crypto/sha256's speed on the same bytes (target >= 85%) NOT met",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "[generic]") {
		t.Errorf("a goal read a path other than the fastest:\n%s", out.String())
	}
}
