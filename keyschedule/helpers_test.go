package keyschedule

import (
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/sframe"
)

func isErr(err, target error) bool { return errors.Is(err, target) }

const testSuite = sframe.AES128GCMSHA256_128

// fakeClock is an injectable clock for the time-based rules.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// group simulates the MLS layer: one base key per epoch, shared by all.
type group struct {
	mu   sync.Mutex
	keys map[uint64][]byte
	size int
}

func newGroup(size int) *group { return &group{keys: map[uint64][]byte{}, size: size} }

func (g *group) epoch(n, index uint64) Epoch {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.keys[n]
	if !ok {
		k = make([]byte, testSuite.KeySize())
		rand.Read(k)
		g.keys[n] = k
	}
	return Epoch{Number: n, BaseKey: k, GroupSize: g.size, Index: index}
}

func mustNew(t testing.TB, opts ...Option) *Schedule {
	t.Helper()
	s, err := New(testSuite, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustInstall(t testing.TB, s *Schedule, e Epoch) {
	t.Helper()
	if err := s.Install(e); err != nil {
		t.Fatal(err)
	}
}

func kidOf(t testing.TB, ct []byte) uint64 {
	t.Helper()
	h, _, err := sframe.ParseHeader(ct)
	if err != nil {
		t.Fatal(err)
	}
	return h.KID
}
