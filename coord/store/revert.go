package store

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"
)

// Withdrawing the newest commit, for the CS's unprocessable endpoint
// (package coord, unprocessable.go; docs/security.md).

// ErrNotNewest: RevertCommit of a commit that is not the group's newest.
var ErrNotNewest = errors.New("coord: not the group's newest commit")

// Reverter is implemented by stores that can withdraw the newest commit
// (MemStore and BoltStore).
type Reverter interface {
	// RevertCommit withdraws the commit accepted for epoch, which must be
	// the newest (the group is at epoch+1): the group goes back to epoch,
	// and the commit and its Welcome leave the archive. Errors:
	// ErrUnknownGroup, ErrNotNewest.
	RevertCommit(ctx context.Context, group string, epoch uint64) error
}

// RevertCommit implements Reverter.
func (m *MemStore) RevertCommit(_ context.Context, group string, epoch uint64) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	g, ok := m.groups[group]
	if !ok {
		return ErrUnknownGroup
	}
	if g.state.Epoch != epoch+1 {
		return ErrNotNewest
	}
	delete(g.commits, epoch)
	delete(g.log, archiveKey{archCommit, epoch})
	delete(g.log, archiveKey{archWelcome, epoch})
	g.state.Epoch = epoch
	return nil
}

// RevertCommit implements Reverter.
func (s *BoltStore) RevertCommit(ctx context.Context, group string, epoch uint64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		gb := tx.Bucket(bktGroups).Bucket([]byte(group))
		if gb == nil {
			return ErrUnknownGroup
		}
		st, err := loadState(gb)
		if err != nil {
			return err
		}
		if st.Epoch != epoch+1 {
			return ErrNotNewest
		}
		if err := gb.Bucket(bktCommits).Delete(u64key(epoch)); err != nil {
			return err
		}
		if lb := gb.Bucket(bktLog); lb != nil {
			for _, k := range []archiveKind{archCommit, archWelcome} {
				if err := lb.Delete(logKey(k, epoch)); err != nil {
					return err
				}
			}
		}
		st.Epoch = epoch
		return gb.Put(keyState, st.marshal())
	})
}
