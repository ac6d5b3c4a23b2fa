package sidecar

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/moqsframe/moqsframe/pipeline"
	"github.com/moqsframe/moqsframe/sframe"
	"github.com/moqsframe/moqsframe/sframe/keyfile"
)

// KeySource gives each track its SFrame keys. The static key file is one
// source; a security group (MLS key schedule) is another.
type KeySource interface {
	// Sealer returns the sealer for a track this sidecar publishes.
	Sealer(t *pipeline.Track) (pipeline.Sealer, error)
	// Opener returns the opener for a track this sidecar receives.
	Opener(t *pipeline.Track) (pipeline.Opener, error)
}

// ErrKeyFile means the key file is missing fields or malformed, or its key
// is too short for its suite; it wraps the keyfile package's error.
var ErrKeyFile = errors.New("sidecar: bad key file")

// StaticKeys derives every track's keys from one shared base key.
//
// A base key must never encrypt two objects under the same (KID, CTR). A
// sidecar restarts with its counters at zero, so each run takes a fresh
// random 40-bit run ID, and the KID of the n-th track it publishes is
// run<<12 | n: a restarted sidecar uses new KIDs, hence new derived keys.
// Receivers accept any KID from the base key. sframe caches a derived key
// only once a ciphertext under it authenticates, so forged KIDs cost a key
// derivation each but no memory; keys accumulate only with publisher runs.
type StaticKeys struct {
	suite sframe.CipherSuite
	base  []byte
	run   uint64

	// ReplayWindow is each opened track's replay window in counters
	// (default DefaultReplayWindow).
	ReplayWindow int

	mu     sync.Mutex
	tracks int
}

const trackBits = 12

// LoadKeyFile reads a static key file (package keyfile's format).
func LoadKeyFile(path string) (*StaticKeys, error) {
	suite, key, err := keyfile.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	return NewStaticKeys(suite, key)
}

// NewStaticKeys returns a key source for one base key.
func NewStaticKeys(suite sframe.CipherSuite, baseKey []byte) (*StaticKeys, error) {
	if err := keyfile.CheckKey(suite, baseKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	return &StaticKeys{suite: suite, base: append([]byte(nil), baseKey...), run: binary.BigEndian.Uint64(r[:]) >> 24}, nil
}

// Sealer returns a new Sender for t under the next KID of this run.
func (k *StaticKeys) Sealer(t *pipeline.Track) (pipeline.Sealer, error) {
	k.mu.Lock()
	n := k.tracks
	k.tracks++
	k.mu.Unlock()
	if n >= 1<<trackBits {
		return nil, fmt.Errorf("sidecar: more than %d published tracks for one static key", 1<<trackBits)
	}
	return sframe.NewSender(k.suite, k.run<<trackBits|uint64(n), k.base)
}

// Opener returns a Receiver for t that derives keys for new KIDs on demand.
func (k *StaticKeys) Opener(*pipeline.Track) (pipeline.Opener, error) {
	window := k.ReplayWindow
	if window <= 0 {
		window = DefaultReplayWindow
	}
	return sframe.NewReceiver(sframe.WithReplayWindow(window),
		sframe.WithKeyResolver(func(uint64) (sframe.CipherSuite, []byte, bool) {
			return k.suite, k.base, true
		})), nil
}

// DefaultReplayWindow is the sidecar's replay window per KID, in counters.
// MoQ carries each group on its own stream and moqtransport v0.5.0 reads
// streams concurrently, so at 10,000 objects/s objects arrived more than
// 1024 counters late (BenchmarkSidecarLoopback); 16384 counters is 2 KiB of
// bitmap per sender.
const DefaultReplayWindow = 16384
