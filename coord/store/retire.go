package store

import (
	"context"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Retiring a group whose members are all gone, for the CS's lifecycle
// rules (package coord, lifecycle.go; docs/coordination-service.md).

// Retirer is implemented by stores that can forget a group (MemStore,
// BoltStore and EtcdStore).
type Retirer interface {
	// RetireGroup removes everything the store holds of group: its state,
	// the digests of its commits, its outbox (items not forwarded yet are
	// dropped: nobody is left to read them) and its archive. The group is
	// then unknown (ErrUnknownGroup), and the next join request creates it
	// afresh at epoch 0 with request sequence 0. Errors: ErrUnknownGroup.
	RetireGroup(ctx context.Context, group string) error
}

// RetireGroup implements Retirer.
func (m *MemStore) RetireGroup(_ context.Context, group string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if _, ok := m.groups[group]; !ok {
		return ErrUnknownGroup
	}
	delete(m.groups, group)
	return nil
}

// RetireGroup implements Retirer.
func (s *BoltStore) RetireGroup(ctx context.Context, group string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		groups := tx.Bucket(bktGroups)
		if groups.Bucket([]byte(group)) == nil {
			return ErrUnknownGroup
		}
		if err := groups.DeleteBucket([]byte(group)); err != nil {
			return err
		}
		return tx.Bucket(bktPending).Delete([]byte(group))
	})
}

// RetireGroup implements Retirer: one transaction deletes every key of the
// group (state, commit digests, outbox, archive) and its pending marker,
// iff the state is unchanged since it was read.
func (s *EtcdStore) RetireGroup(ctx context.Context, group string) error {
	return s.decide(ctx, group, func(ctx context.Context) error {
		_, rev, _, err := s.readState(ctx, group)
		if err != nil {
			return err
		}
		return s.commitIf(ctx, group, rev,
			clientv3.OpDelete(s.groupKey(group), clientv3.WithPrefix()),
			clientv3.OpDelete(s.pendingKey(group)))
	})
}
