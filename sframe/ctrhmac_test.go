package sframe

import (
	"bytes"
	"testing"

	"github.com/moqsframe/moqsframe/internal/impl"
)

// TestCTRHMACPathsAgree seals the same objects on every HMAC-SHA256 path
// (the one-pass SHA-NI seal, and the pure-Go block function after a
// separate CTR) for suites 1-3, with plaintexts of 0..700 bytes and
// metadata of 0..150 bytes, both out of place and in place, and requires
// identical ciphertexts that each path opens.
func TestCTRHMACPathsAgree(t *testing.T) {
	t.Cleanup(func() { impl.Reset("hmacsha256") })
	paths := impl.Available("hmacsha256")
	for _, suite := range []CipherSuite{AES128CTRHMACSHA256_80, AES128CTRHMACSHA256_64, AES128CTRHMACSHA256_32} {
		base := randBytes(suite.KeySize())
		pt := randBytes(700)
		md := randBytes(150)
		for n := 0; n <= len(pt); n += 7 {
			m := md[:n%151]
			var first []byte
			for _, path := range paths {
				if !impl.Select("hmacsha256", path) {
					t.Fatalf("cannot select %s", path)
				}
				s, err := NewSender(suite, 9, base, WithCounter(uint64(n)))
				if err != nil {
					t.Fatal(err)
				}
				ct, err := s.Seal(nil, m, pt[:n])
				if err != nil {
					t.Fatal(err)
				}
				inPlace := make([]byte, n, n+s.Overhead())
				copy(inPlace, pt[:n])
				s2, _ := NewSender(suite, 9, base, WithCounter(uint64(n)))
				ct2, err := s2.Seal(inPlace[:0], m, inPlace)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ct, ct2) {
					t.Fatalf("%v %s len %d: in-place seal differs", suite, path, n)
				}
				if first == nil {
					first = ct
				} else if !bytes.Equal(ct, first) {
					t.Fatalf("%v len %d md %d: %s differs from %s", suite, n, len(m), path, paths[0])
				}
				r := NewReceiver()
				r.AddKey(suite, 9, base)
				if got, err := r.Open(nil, m, ct); err != nil || !bytes.Equal(got, pt[:n]) {
					t.Fatalf("%v %s len %d: open: %v", suite, path, n, err)
				}
			}
		}
	}
}
