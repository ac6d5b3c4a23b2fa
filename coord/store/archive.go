package store

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Catch-up archive: in the same atomic transaction that decides an item,
// the stores keep its bytes, which the CS serves over HTTPS (the endpoints
// are in package coord, archive.go; docs/coordination-service.md). Items
// are never deleted (retention is an open item, see
// docs/security-groups.md), except a withdrawn commit (Reverter).

// ErrNotFound: the archive has no such item (not decided yet, or a commit
// without a Welcome).
var ErrNotFound = errors.New("coord: no such item")

// Archive is implemented by stores that keep the bytes of decided items.
// MemStore and BoltStore implement it.
type Archive interface {
	// ArchivedCommit returns the Commit accepted for epoch.
	ArchivedCommit(ctx context.Context, group string, epoch uint64) ([]byte, error)
	// ArchivedWelcome returns the Welcome recorded for the Commit of epoch.
	ArchivedWelcome(ctx context.Context, group string, epoch uint64) ([]byte, error)
	// ArchivedRequest returns the Request with sequence number seq.
	ArchivedRequest(ctx context.Context, group string, seq uint64) ([]byte, error)
	// State returns the group's epoch and next request sequence number.
	State(ctx context.Context, group string) (epoch, nextSeq uint64, err error)
}

type archiveKind byte

const (
	archCommit  archiveKind = 'c'
	archWelcome archiveKind = 'w'
	archRequest archiveKind = 'r'
)

type archiveKey struct {
	kind archiveKind
	num  uint64
}

func logKey(k archiveKind, n uint64) []byte {
	b := make([]byte, 9)
	b[0] = byte(k)
	binary.BigEndian.PutUint64(b[1:], n)
	return b
}

func logPut(gb *bolt.Bucket, k archiveKind, n uint64, data []byte) error {
	lb, err := gb.CreateBucketIfNotExists(bktLog)
	if err != nil {
		return err
	}
	return lb.Put(logKey(k, n), data)
}

func (s *BoltStore) archived(ctx context.Context, group string, k archiveKind, n uint64) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		gb := tx.Bucket(bktGroups).Bucket([]byte(group))
		if gb == nil {
			return ErrUnknownGroup
		}
		lb := gb.Bucket(bktLog)
		if lb == nil {
			return ErrNotFound
		}
		v := lb.Get(logKey(k, n))
		if v == nil {
			return ErrNotFound
		}
		out = slices.Clone(v)
		return nil
	})
	return out, err
}

func (s *BoltStore) ArchivedCommit(ctx context.Context, group string, epoch uint64) ([]byte, error) {
	return s.archived(ctx, group, archCommit, epoch)
}

func (s *BoltStore) ArchivedWelcome(ctx context.Context, group string, epoch uint64) ([]byte, error) {
	return s.archived(ctx, group, archWelcome, epoch)
}

func (s *BoltStore) ArchivedRequest(ctx context.Context, group string, seq uint64) ([]byte, error) {
	return s.archived(ctx, group, archRequest, seq)
}

func (s *BoltStore) State(ctx context.Context, group string) (epoch, nextSeq uint64, err error) {
	err = s.view(ctx, func(tx *bolt.Tx) error {
		gb := tx.Bucket(bktGroups).Bucket([]byte(group))
		if gb == nil {
			return ErrUnknownGroup
		}
		st, err := loadState(gb)
		epoch, nextSeq = st.Epoch, st.NextReqSeq
		return err
	})
	return epoch, nextSeq, err
}

func (m *MemStore) archived(group string, k archiveKind, n uint64) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	g, ok := m.groups[group]
	if !ok {
		return nil, ErrUnknownGroup
	}
	v, ok := g.log[archiveKey{k, n}]
	if !ok {
		return nil, ErrNotFound
	}
	return slices.Clone(v), nil
}

func (m *MemStore) ArchivedCommit(_ context.Context, group string, epoch uint64) ([]byte, error) {
	return m.archived(group, archCommit, epoch)
}

func (m *MemStore) ArchivedWelcome(_ context.Context, group string, epoch uint64) ([]byte, error) {
	return m.archived(group, archWelcome, epoch)
}

func (m *MemStore) ArchivedRequest(_ context.Context, group string, seq uint64) ([]byte, error) {
	return m.archived(group, archRequest, seq)
}

func (m *MemStore) State(_ context.Context, group string) (epoch, nextSeq uint64, err error) {
	if err := m.lock(); err != nil {
		return 0, 0, err
	}
	defer m.mu.Unlock()
	g, ok := m.groups[group]
	if !ok {
		return 0, 0, ErrUnknownGroup
	}
	return g.state.Epoch, g.state.NextReqSeq, nil
}
