package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Heard is one member leaf's liveness record: when a CS replica last heard
// it (a heartbeat or an epoch ack), at which epoch, and whether it left.
type Heard struct {
	Identity string
	Leaf     uint32
	Epoch    uint64
	At       time.Time
	Left     bool
}

// LivenessSharer is implemented by stores that several CS replicas share
// (EtcdStore): behind a load balancer a member's heartbeats reach any
// replica, so each replica publishes what it hears and reads what the
// others heard before it judges silence. Records are per group and go
// with the group when it is retired.
type LivenessSharer interface {
	ShareHeard(ctx context.Context, group string, h Heard) error
	LoadHeard(ctx context.Context, group string) ([]Heard, error)
}

func (s *EtcdStore) heardPrefix(group string) string { return s.groupKey(group) + "h/" }

// ShareHeard implements LivenessSharer: one put per record, newest wins.
func (s *EtcdStore) ShareHeard(ctx context.Context, group string, h Heard) error {
	key := s.heardPrefix(group) + url.PathEscape(h.Identity) + "/" + strconv.FormatUint(uint64(h.Leaf), 10)
	var v [17]byte
	binary.BigEndian.PutUint64(v[:], h.Epoch)
	binary.BigEndian.PutUint64(v[8:], uint64(h.At.UnixNano()))
	if h.Left {
		v[16] = 1
	}
	return s.run(ctx, func(ctx context.Context) error {
		_, err := s.cli.Put(ctx, key, string(v[:]))
		return err
	})
}

// LoadHeard implements LivenessSharer.
func (s *EtcdStore) LoadHeard(ctx context.Context, group string) ([]Heard, error) {
	var out []Heard
	err := s.run(ctx, func(ctx context.Context) error {
		out = out[:0]
		prefix := s.heardPrefix(group)
		resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(maxHeardRecords))
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			id, leaf, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
			n, err := strconv.ParseUint(leaf, 10, 32)
			if !ok || err != nil || len(kv.Value) != 17 {
				return fmt.Errorf("coord: corrupt liveness record %q", kv.Key)
			}
			if id, err = url.PathUnescape(id); err != nil {
				return fmt.Errorf("coord: corrupt liveness record %q", kv.Key)
			}
			out = append(out, Heard{Identity: id, Leaf: uint32(n), Epoch: binary.BigEndian.Uint64(kv.Value),
				At: time.Unix(0, int64(binary.BigEndian.Uint64(kv.Value[8:]))), Left: kv.Value[16] == 1})
		}
		return nil
	})
	return out, err
}

// maxHeardRecords bounds what LoadHeard reads of one group.
const maxHeardRecords = 4096
