package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrTooLarge: the item (with the copies the store keeps of it) does not fit
// in one store transaction; the server answers 413. Only EtcdStore has such
// a limit (etcd's --max-request-bytes).
var ErrTooLarge = errors.New("coord: item too large for the store")

// DefaultEtcdPrefix is the key prefix of EtcdStore when EtcdConfig.Prefix is
// empty.
const DefaultEtcdPrefix = "moqsframe/cs/"

// DefaultEtcdMaxRequestBytes is etcd's default --max-request-bytes (1.5 MiB).
const DefaultEtcdMaxRequestBytes = 1536 * 1024

// EtcdConfig configures an EtcdStore.
type EtcdConfig struct {
	// Endpoints are the etcd members' client URLs (https://host:2379 with
	// TLS, http://... without); the client balances over them and fails
	// over when one dies.
	Endpoints []string
	// TLS, if set, is used for the client connections (CA, and a client
	// certificate if the cluster requires one: --client-cert-auth).
	TLS *tls.Config
	// Username and Password authenticate to an etcd cluster with auth
	// enabled; empty: none.
	Username, Password string
	// Prefix is put before every key; replicas serving the same groups use
	// the same prefix. Empty: DefaultEtcdPrefix.
	Prefix string
	// MaxRequestBytes is the cluster's --max-request-bytes; a decision
	// whose transaction would be larger fails with ErrTooLarge. 0:
	// DefaultEtcdMaxRequestBytes.
	MaxRequestBytes int
	// DialTimeout bounds connecting (0: 5 s); OpTimeout bounds one store
	// call including its retries over a leader change (0: 15 s).
	DialTimeout, OpTimeout time.Duration
}

// EtcdStore is a Store on an etcd cluster, for CS replicas that must
// survive the loss of any one machine: any number of sframe-cs processes
// can use the same cluster and prefix and serve the same groups. Every
// decision is one etcd transaction that compares the ModRevision of the
// group's state key with the one it was computed from (compare-and-swap):
// of two racing decisions exactly one commits, the other is recomputed from
// the new state. So "create the group once", "accept a Commit iff the
// stored epoch equals its epoch" and the request sequence numbers are
// decided by etcd's raft log, not by any one CS process.
//
// Layout (group names path-escaped):
//
//	<prefix>g/<group>/s         groupState || uint64 next outbox ID
//	<prefix>g/<group>/c/<e>     commit record of epoch e (as BoltStore)
//	<prefix>g/<group>/o/<id>    outbox entry not yet acknowledged
//	<prefix>g/<group>/l/<k><n>  catch-up archive: k = 'c' commit, 'w' welcome, 'r' request
//	<prefix>p/<group>           present while the group's outbox is non-empty
//	<prefix>fwd/<shard>/...     forwarder elections (EtcdLeader)
//
// Numbers in keys are 8-byte big-endian, so keys sort by number.
//
// A call that meets a leader change or an unreachable member is retried
// (re-reading the state, so a transaction that was applied but whose answer
// was lost is recognised: a repeated Commit is then CommitDuplicate, a
// repeated creating join Created, and a request whose transaction may have
// been applied is looked up in the archive under the sequence number it
// would have got, so it is not queued twice) until EtcdConfig.OpTimeout.
type EtcdStore struct {
	cli       *clientv3.Client
	prefix    string
	maxReq    int
	opTimeout time.Duration
	closed    atomic.Bool
	// Decisions on one group are serialised within this process: the
	// compare-and-swap decides between replicas, and without the lock n
	// concurrent callers in one process would make O(n²) attempts.
	locks [64]sync.Mutex
}

// decide is run for a decision on group, holding the group's local lock.
func (s *EtcdStore) decide(ctx context.Context, group string, attempt func(ctx context.Context) error) error {
	h := fnv.New32a()
	h.Write([]byte(group))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	defer m.Unlock()
	return s.run(ctx, attempt)
}

// OpenEtcdStore connects to the cluster and checks that it answers.
func OpenEtcdStore(ctx context.Context, cfg EtcdConfig) (*EtcdStore, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("coord: etcd store needs at least one endpoint")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: cfg.DialTimeout,
		Logger:      zap.NewNop(),
		// A decision is at most MaxRequestBytes; leave room for gRPC framing.
		MaxCallSendMsgSize: max(cfg.MaxRequestBytes, DefaultEtcdMaxRequestBytes) + 64*1024,
	})
	if err != nil {
		return nil, fmt.Errorf("coord: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	s := &EtcdStore{cli: cli, prefix: cfg.Prefix, maxReq: cfg.MaxRequestBytes, opTimeout: cfg.OpTimeout}
	if s.prefix == "" {
		s.prefix = DefaultEtcdPrefix
	}
	if s.maxReq <= 0 {
		s.maxReq = DefaultEtcdMaxRequestBytes
	}
	if s.opTimeout <= 0 {
		s.opTimeout = 15 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, s.prefix+"s", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("coord: etcd %v does not answer: %w (check -store endpoints, TLS and credentials)", cfg.Endpoints, err)
	}
	return s, nil
}

// Client returns the store's etcd client (for EtcdLeader).
func (s *EtcdStore) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix.
func (s *EtcdStore) Prefix() string { return s.prefix }

func (s *EtcdStore) groupKey(group string) string {
	return s.prefix + "g/" + url.PathEscape(group) + "/"
}
func (s *EtcdStore) stateKey(group string) string { return s.groupKey(group) + "s" }
func (s *EtcdStore) commitKey(group string, e uint64) string {
	return s.groupKey(group) + "c/" + string(u64key(e))
}
func (s *EtcdStore) outboxPrefix(group string) string { return s.groupKey(group) + "o/" }
func (s *EtcdStore) outboxKey(group string, id uint64) string {
	return s.outboxPrefix(group) + string(u64key(id))
}
func (s *EtcdStore) logKey(group string, k archiveKind, n uint64) string {
	return s.groupKey(group) + "l/" + string(logKey(k, n))
}
func (s *EtcdStore) pendingPrefix() string          { return s.prefix + "p/" }
func (s *EtcdStore) pendingKey(group string) string { return s.pendingPrefix() + url.PathEscape(group) }
func (s *EtcdStore) pendingGroup(key string) (string, error) {
	return url.PathUnescape(strings.TrimPrefix(key, s.pendingPrefix()))
}

// etcdState is the group's record: the state both stores share and the
// next outbox ID (bbolt keeps that in the outbox bucket's sequence).
type etcdState struct {
	groupState
	NextOutboxID uint64
}

func (st *etcdState) marshal() string {
	return string(binary.BigEndian.AppendUint64(st.groupState.marshal(), st.NextOutboxID))
}

func unmarshalEtcdState(b []byte) (etcdState, error) {
	if len(b) != groupStateLen+8 {
		return etcdState{}, fmt.Errorf("coord: corrupt etcd group state record (%d bytes, want %d)", len(b), groupStateLen+8)
	}
	g, err := unmarshalGroupState(b[:groupStateLen])
	return etcdState{groupState: g, NextOutboxID: binary.BigEndian.Uint64(b[groupStateLen:])}, err
}

// errCASLost: another decision changed the group between our read and our
// transaction; recompute.
var errCASLost = errors.New("coord: etcd compare failed")

// run calls attempt until it succeeds, fails for good, or the store's
// operation timeout passes. Lost compare-and-swaps are retried at once;
// an unavailable cluster (leader change, dead member) with backoff.
func (s *EtcdStore) run(ctx context.Context, attempt func(ctx context.Context) error) error {
	if s.closed.Load() {
		return ErrStoreClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		err := attempt(ctx)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errCASLost):
			continue
		case s.closed.Load():
			return ErrStoreClosed
		case transient(err) && ctx.Err() == nil:
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("coord: etcd unavailable: %w", err)
			case <-t.C:
			}
			backoff = min(2*backoff, 500*time.Millisecond)
		default:
			return err
		}
	}
}

// transient reports whether err is etcd being briefly unable to answer (no
// leader, leader changed, a member down, a request timed out in raft).
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// The per-call deadline of the caller's context; run checks its own.
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable || ee.Code() == codes.DeadlineExceeded || ee.Code() == codes.Aborted
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
			return true
		}
	}
	return false
}

// checkSize refuses a transaction whose keys and values exceed the
// cluster's request limit (with 512 bytes for the request's framing).
func (s *EtcdStore) checkSize(what string, ops []clientv3.Op) error {
	n := 512
	for _, op := range ops {
		n += len(op.KeyBytes()) + len(op.ValueBytes()) + 16
	}
	if n > s.maxReq {
		return fmt.Errorf("%w: the %s needs a %d-byte etcd transaction (the store keeps it in the outbox and the archive), the cluster accepts %d (--max-request-bytes)", ErrTooLarge, what, n, s.maxReq)
	}
	return nil
}

// readState returns the group's state and its key's ModRevision (0 and
// ErrUnknownGroup if absent) plus the responses of more reads done in the
// same snapshot.
func (s *EtcdStore) readState(ctx context.Context, group string, more ...clientv3.Op) (etcdState, int64, []*clientv3.GetResponse, error) {
	ops := append([]clientv3.Op{clientv3.OpGet(s.stateKey(group))}, more...)
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return etcdState{}, 0, nil, err
	}
	gets := make([]*clientv3.GetResponse, len(resp.Responses))
	for i, r := range resp.Responses {
		gets[i] = (*clientv3.GetResponse)(r.GetResponseRange())
	}
	if len(gets[0].Kvs) == 0 {
		return etcdState{}, 0, gets[1:], ErrUnknownGroup
	}
	kv := gets[0].Kvs[0]
	st, err := unmarshalEtcdState(kv.Value)
	return st, kv.ModRevision, gets[1:], err
}

// commitIf applies ops iff the group's state key is still at rev (0: does
// not exist yet).
func (s *EtcdStore) commitIf(ctx context.Context, group string, rev int64, ops ...clientv3.Op) error {
	cmp := clientv3.Compare(clientv3.ModRevision(s.stateKey(group)), "=", rev)
	if rev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(s.stateKey(group)), "=", 0)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errCASLost
	}
	return nil
}

// enqueueOps returns the writes that queue e (its ID assigned from st).
func (s *EtcdStore) enqueueOps(group string, st *etcdState, e *OutboxEntry) ([]clientv3.Op, error) {
	st.NextOutboxID++
	e.ID = st.NextOutboxID
	enc, err := marshalOutboxEntry(e)
	if err != nil {
		return nil, err
	}
	return []clientv3.Op{
		clientv3.OpPut(s.outboxKey(group, e.ID), string(enc)),
		clientv3.OpPut(s.pendingKey(group), ""),
	}, nil
}

func (s *EtcdStore) SubmitRequest(ctx context.Context, group string, req []byte, mayCreate bool) (RequestResult, error) {
	var res RequestResult
	digest := sha256.Sum256(req)
	// unsure: our last transaction failed without an answer (etcd timed
	// out or the member died); it may have been applied.
	var unsure *RequestResult
	err := s.decide(ctx, group, func(ctx context.Context) error {
		var check []clientv3.Op
		if unsure != nil {
			check = append(check, clientv3.OpGet(s.logKey(group, archRequest, unsure.Seq)))
		}
		st, rev, more, err := s.readState(ctx, group, check...)
		if err == nil && unsure != nil {
			if kvs := more[0].Kvs; len(kvs) == 1 && bytes.Equal(kvs[0].Value, req) {
				res = *unsure // it was applied: do not queue the request twice
				return nil
			}
			unsure = nil
		}
		if errors.Is(err, ErrUnknownGroup) {
			if !mayCreate {
				return ErrUnknownGroup
			}
			st := etcdState{groupState: groupState{Creator: digest}}
			if err := s.commitIf(ctx, group, 0, clientv3.OpPut(s.stateKey(group), st.marshal())); err != nil {
				return err
			}
			res = RequestResult{Created: true}
			return nil
		}
		if err != nil {
			return err
		}
		if mayCreate && st.Epoch == 0 && st.Creator == digest {
			res = RequestResult{Created: true}
			return nil
		}
		e := OutboxEntry{Kind: OutboxRequest, Num: st.NextReqSeq, Payload: req}
		ops, err := s.enqueueOps(group, &st, &e)
		if err != nil {
			return err
		}
		st.NextReqSeq++
		ops = append(ops,
			clientv3.OpPut(s.logKey(group, archRequest, e.Num), string(req)),
			clientv3.OpPut(s.stateKey(group), st.marshal()))
		if err := s.checkSize("request", ops); err != nil {
			return err
		}
		if err := s.commitIf(ctx, group, rev, ops...); err != nil {
			if !errors.Is(err, errCASLost) {
				unsure = &RequestResult{Seq: e.Num, OutboxID: e.ID}
			}
			return err
		}
		res = RequestResult{Seq: e.Num, OutboxID: e.ID}
		return nil
	})
	if err != nil {
		return RequestResult{}, err
	}
	return res, nil
}

func (s *EtcdStore) SubmitCommit(ctx context.Context, group string, epoch uint64, commit, welcome []byte) (CommitResult, error) {
	var res CommitResult
	digest := sha256.Sum256(commit)
	err := s.decide(ctx, group, func(ctx context.Context) error {
		st, rev, more, err := s.readState(ctx, group, clientv3.OpGet(s.commitKey(group, epoch)))
		if err != nil {
			return err
		}
		if epoch != st.Epoch {
			var rec commitRecord
			ok := false
			if kvs := more[0].Kvs; len(kvs) == 1 {
				rec, ok = unmarshalCommitRecord(kvs[0].Value)
			}
			if !ok || rec.Digest != digest {
				res = CommitResult{Outcome: CommitConflict, Epoch: st.Epoch}
				return nil
			}
			res = CommitResult{Outcome: CommitDuplicate, Epoch: st.Epoch}
			if welcome == nil || rec.Welcome {
				return nil
			}
			rec.Welcome = true
			e := OutboxEntry{Kind: OutboxWelcome, Num: epoch, Welcome: welcome}
			ops, err := s.enqueueOps(group, &st, &e)
			if err != nil {
				return err
			}
			ops = append(ops,
				clientv3.OpPut(s.commitKey(group, epoch), string(rec.marshal())),
				clientv3.OpPut(s.logKey(group, archWelcome, epoch), string(welcome)),
				clientv3.OpPut(s.stateKey(group), st.marshal()))
			if err := s.checkSize("welcome", ops); err != nil {
				return err
			}
			// The state key changes with every decision (the outbox ID),
			// so comparing it also covers the commit record.
			if err := s.commitIf(ctx, group, rev, ops...); err != nil {
				return err
			}
			res.OutboxID = e.ID
			return nil
		}
		e := OutboxEntry{Kind: OutboxCommit, Num: epoch, Payload: commit, Welcome: welcome}
		ops, err := s.enqueueOps(group, &st, &e)
		if err != nil {
			return err
		}
		st.Epoch++
		ops = append(ops,
			clientv3.OpPut(s.commitKey(group, epoch), string(commitRecord{Digest: digest, Welcome: welcome != nil}.marshal())),
			clientv3.OpPut(s.logKey(group, archCommit, epoch), string(commit)),
			clientv3.OpPut(s.stateKey(group), st.marshal()))
		if welcome != nil {
			ops = append(ops, clientv3.OpPut(s.logKey(group, archWelcome, epoch), string(welcome)))
		}
		if err := s.checkSize("commit and welcome", ops); err != nil {
			return err
		}
		if err := s.commitIf(ctx, group, rev, ops...); err != nil {
			return err
		}
		res = CommitResult{Outcome: CommitAccepted, Epoch: st.Epoch, OutboxID: e.ID}
		return nil
	})
	if err != nil {
		return CommitResult{}, err
	}
	return res, nil
}

func (s *EtcdStore) Epoch(ctx context.Context, group string) (uint64, error) {
	e, _, err := s.State(ctx, group)
	return e, err
}

// State implements Archive.
func (s *EtcdStore) State(ctx context.Context, group string) (epoch, nextSeq uint64, err error) {
	err = s.run(ctx, func(ctx context.Context) error {
		st, _, _, err := s.readState(ctx, group)
		epoch, nextSeq = st.Epoch, st.NextReqSeq
		return err
	})
	return epoch, nextSeq, err
}

func (s *EtcdStore) Outbox(ctx context.Context, group string) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.run(ctx, func(ctx context.Context) error {
		out = nil
		_, _, more, err := s.readState(ctx, group, clientv3.OpGet(s.outboxPrefix(group), clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)))
		if err != nil {
			return err
		}
		for _, kv := range more[0].Kvs {
			e, err := unmarshalOutboxEntry(kv.Value)
			if err != nil {
				return fmt.Errorf("coord: corrupt outbox entry %q of group %q: %w", kv.Key, group, err)
			}
			e.ID = binary.BigEndian.Uint64(kv.Key[len(kv.Key)-8:])
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Ack deletes the entry and, with the last one, the group's pending
// marker. It rewrites the state key unchanged so that it serialises with
// the decisions that enqueue (which also write it): an entry queued
// concurrently keeps the marker.
func (s *EtcdStore) Ack(ctx context.Context, group string, id uint64) error {
	return s.decide(ctx, group, func(ctx context.Context) error {
		key := s.outboxKey(group, id)
		st, rev, more, err := s.readState(ctx, group,
			clientv3.OpGet(key, clientv3.WithCountOnly()),
			clientv3.OpGet(s.outboxPrefix(group), clientv3.WithPrefix(), clientv3.WithCountOnly()))
		if errors.Is(err, ErrUnknownGroup) {
			return nil
		}
		if err != nil {
			return err
		}
		if more[0].Count == 0 {
			return nil
		}
		ops := []clientv3.Op{clientv3.OpDelete(key), clientv3.OpPut(s.stateKey(group), st.marshal())}
		if more[1].Count == 1 {
			ops = append(ops, clientv3.OpDelete(s.pendingKey(group)))
		}
		return s.commitIf(ctx, group, rev, ops...)
	})
}

func (s *EtcdStore) PendingGroups(ctx context.Context) ([]string, error) {
	var out []string
	err := s.run(ctx, func(ctx context.Context) error {
		out = nil
		resp, err := s.cli.Get(ctx, s.pendingPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			g, err := s.pendingGroup(string(kv.Key))
			if err != nil {
				return fmt.Errorf("coord: corrupt pending key %q: %w", kv.Key, err)
			}
			out = append(out, g)
		}
		return nil
	})
	return out, err
}

func (s *EtcdStore) archived(ctx context.Context, group string, k archiveKind, n uint64) ([]byte, error) {
	var out []byte
	err := s.run(ctx, func(ctx context.Context) error {
		_, _, more, err := s.readState(ctx, group, clientv3.OpGet(s.logKey(group, k, n)))
		if err != nil {
			return err
		}
		if len(more[0].Kvs) == 0 {
			return ErrNotFound
		}
		out = more[0].Kvs[0].Value
		return nil
	})
	return out, err
}

// ArchivedCommit implements Archive.
func (s *EtcdStore) ArchivedCommit(ctx context.Context, group string, epoch uint64) ([]byte, error) {
	return s.archived(ctx, group, archCommit, epoch)
}

// ArchivedWelcome implements Archive.
func (s *EtcdStore) ArchivedWelcome(ctx context.Context, group string, epoch uint64) ([]byte, error) {
	return s.archived(ctx, group, archWelcome, epoch)
}

// ArchivedRequest implements Archive.
func (s *EtcdStore) ArchivedRequest(ctx context.Context, group string, seq uint64) ([]byte, error) {
	return s.archived(ctx, group, archRequest, seq)
}

// RevertCommit implements Reverter.
func (s *EtcdStore) RevertCommit(ctx context.Context, group string, epoch uint64) error {
	return s.decide(ctx, group, func(ctx context.Context) error {
		st, rev, _, err := s.readState(ctx, group)
		if err != nil {
			return err
		}
		if st.Epoch != epoch+1 {
			return ErrNotNewest
		}
		st.Epoch = epoch
		return s.commitIf(ctx, group, rev,
			clientv3.OpDelete(s.commitKey(group, epoch)),
			clientv3.OpDelete(s.logKey(group, archCommit, epoch)),
			clientv3.OpDelete(s.logKey(group, archWelcome, epoch)),
			clientv3.OpPut(s.stateKey(group), st.marshal()))
	})
}

// Close closes the client. Later calls fail with ErrStoreClosed.
func (s *EtcdStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.cli.Close()
}
