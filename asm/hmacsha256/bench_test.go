package hmacsha256

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"flag"
	"fmt"
	"github.com/moqsframe/moqsframe/internal/cputime"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/internal/impl"
)

var benchSizes = []int{64, 160, 1200, 16384}

var ratioRounds = flag.Int("hmacsha256.rounds", 3, "best of this many alternating 20 ms rounds for the x- ratios")

// ratio returns base's time over ours, each the best of -hmacsha256.rounds
// alternating rounds, so that load on a shared machine slows both alike.
func ratio(base, ours func()) float64 {
	b, o := 0.0, 0.0
	for range *ratioRounds {
		if ns := cputime.PerCall(base, 20*time.Millisecond); b == 0 || ns < b {
			b = ns
		}
		if ns := cputime.PerCall(ours, 20*time.Millisecond); o == 0 || ns < o {
			o = ns
		}
	}
	return b / o
}

// BenchmarkHMAC measures Key.Sum over a 56-byte prefix (SFrame's MAC
// prefix with a short AAD) and a size-byte body, per block function. The
// x-hmac metric is crypto/hmac (Reset, two Writes, Sum, with a fixed key)
// over the same bytes, timed in this process, over ours. Run:
//
//	go test -run '^$' -bench HMAC ./asm/hmacsha256/
func BenchmarkHMAC(b *testing.B) {
	key := make([]byte, 32)
	prefix := make([]byte, 56)
	for _, size := range benchSizes {
		body := make([]byte, size)
		ref := hmac.New(sha256.New, key)
		sum := make([]byte, 0, Size)
		stdlib := func() {
			ref.Reset()
			ref.Write(prefix)
			ref.Write(body)
			ref.Sum(sum[:0])
		}
		k := New(key)
		var mac [Size]byte
		ours := func() { k.Sum(&mac, prefix, body) }
		for _, name := range impl.Available("hmacsha256") {
			b.Run(fmt.Sprintf("%d/%s", size, name), func(b *testing.B) {
				impl.Select("hmacsha256", name)
				defer impl.Reset("hmacsha256")
				b.SetBytes(int64(len(prefix) + size))
				b.ReportAllocs()
				for b.Loop() {
					ours()
				}
				b.ReportMetric(ratio(stdlib, ours), "x-hmac")
			})
		}
	}
}

// BenchmarkSHA256 measures plain SHA-256 of size bytes, per block function.
// The x-sha256 metric is crypto/sha256.Sum256 of the same bytes over ours.
func BenchmarkSHA256(b *testing.B) {
	for _, size := range benchSizes {
		msg := make([]byte, size)
		stdlib := func() { sha256.Sum256(msg) }
		ours := func() { sum256(msg) }
		for _, name := range impl.Available("hmacsha256") {
			b.Run(fmt.Sprintf("%d/%s", size, name), func(b *testing.B) {
				impl.Select("hmacsha256", name)
				defer impl.Reset("hmacsha256")
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					ours()
				}
				b.ReportMetric(ratio(stdlib, ours), "x-sha256")
			})
		}
	}
}

// BenchmarkSealCTR measures the one-pass AES-128-CTR + HMAC-SHA256 seal
// over a 60-byte prefix (SFrame's with a short header and 20 bytes of
// metadata) and a size-byte plaintext. Two ratios, timed in this process:
// x-composition is crypto/aes CTR (cipher.NewCTR per message) then
// crypto/hmac over the same bytes, over ours; x-sha256 is crypto/sha256.Sum256
// of the size-byte plaintext alone over ours (the SFrame goal compares with
// it at 1200 B and 16 KiB).
func BenchmarkSealCTR(b *testing.B) {
	var key [16]byte
	c := NewCTR(&key)
	if c == nil {
		b.Skip("no stitched kernel in this build or on this CPU")
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		b.Fatal(err)
	}
	macKey := make([]byte, 32)
	k := New(macKey)
	ref := hmac.New(sha256.New, macKey)
	prefix := make([]byte, 60)
	var iv [16]byte
	for _, size := range benchSizes {
		pt, ct := make([]byte, size), make([]byte, size)
		sum := make([]byte, 0, Size)
		var mac [Size]byte
		ours := func() { k.SealCTR(&mac, c, &iv, ct, pt, prefix) }
		composition := func() {
			cipher.NewCTR(block, iv[:]).XORKeyStream(ct, pt)
			ref.Reset()
			ref.Write(prefix)
			ref.Write(ct)
			ref.Sum(sum[:0])
		}
		plain := func() { sha256.Sum256(pt) }
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				ours()
			}
			b.ReportMetric(ratio(composition, ours), "x-composition")
			b.ReportMetric(ratio(plain, ours), "x-sha256")
		})
	}
}
