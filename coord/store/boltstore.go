package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/cryptobyte"

	"github.com/moqsframe/moqsframe/coord/wire"
)

// BoltStore is the default Store: an embedded bbolt database file. Every
// decision is one bbolt Update transaction, which is fsynced before it
// returns, so a decision that was reported to the server survives a crash.
//
// Layout:
//
//	groups/<name>/state        groupState (epoch, next request seq, creator digest)
//	groups/<name>/commits/<e>  SHA-256 of the commit accepted in epoch e || welcome-queued flag
//	groups/<name>/outbox/<id>  OutboxEntry not yet acknowledged
//	groups/<name>/log/<k><n>   catch-up archive (archive.go): k = 'c' commit,
//	                           'w' welcome (n = epoch), 'r' request (n = seq)
//	pending/<name>             present while groups/<name>/outbox is non-empty
type BoltStore struct {
	db *bolt.DB
}

var (
	bktGroups  = []byte("groups")
	bktPending = []byte("pending")
	bktCommits = []byte("commits")
	bktOutbox  = []byte("outbox")
	bktLog     = []byte("log")
	keyState   = []byte("state")
)

// OpenBoltStore opens (creating if needed) the database at path. It fails
// after one second if another process holds the file.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("coord: open store %s: %w (is another sframe-cs using it?)", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bktGroups); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bktPending)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("coord: initialise store %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

func u64key(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func (s *BoltStore) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrStoreClosed
	}
	return err
}

func (s *BoltStore) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrStoreClosed
	}
	return err
}

func loadState(gb *bolt.Bucket) (groupState, error) {
	return unmarshalGroupState(gb.Get(keyState))
}

func enqueue(tx *bolt.Tx, gb *bolt.Bucket, group string, e *OutboxEntry) error {
	ob := gb.Bucket(bktOutbox)
	id, err := ob.NextSequence()
	if err != nil {
		return err
	}
	e.ID = id
	enc, err := marshalOutboxEntry(e)
	if err != nil {
		return err
	}
	if err := ob.Put(u64key(id), enc); err != nil {
		return err
	}
	return tx.Bucket(bktPending).Put([]byte(group), nil)
}

func (s *BoltStore) SubmitRequest(ctx context.Context, group string, req []byte, mayCreate bool) (RequestResult, error) {
	var res RequestResult
	digest := sha256.Sum256(req)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		groups := tx.Bucket(bktGroups)
		gb := groups.Bucket([]byte(group))
		if gb == nil {
			if !mayCreate {
				return ErrUnknownGroup
			}
			gb, err := groups.CreateBucket([]byte(group))
			if err != nil {
				return err
			}
			if _, err := gb.CreateBucket(bktCommits); err != nil {
				return err
			}
			if _, err := gb.CreateBucket(bktOutbox); err != nil {
				return err
			}
			st := groupState{Creator: digest}
			res = RequestResult{Created: true}
			return gb.Put(keyState, st.marshal())
		}
		st, err := loadState(gb)
		if err != nil {
			return err
		}
		if mayCreate && st.Epoch == 0 && st.Creator == digest {
			res = RequestResult{Created: true}
			return nil
		}
		e := OutboxEntry{Kind: OutboxRequest, Num: st.NextReqSeq, Payload: req}
		if err := enqueue(tx, gb, group, &e); err != nil {
			return err
		}
		if err := logPut(gb, archRequest, e.Num, req); err != nil {
			return err
		}
		st.NextReqSeq++
		res = RequestResult{Seq: e.Num, OutboxID: e.ID}
		return gb.Put(keyState, st.marshal())
	})
	if err != nil {
		return RequestResult{}, err
	}
	return res, nil
}

func (s *BoltStore) SubmitCommit(ctx context.Context, group string, epoch uint64, commit, welcome []byte) (CommitResult, error) {
	var res CommitResult
	digest := sha256.Sum256(commit)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		gb := tx.Bucket(bktGroups).Bucket([]byte(group))
		if gb == nil {
			return ErrUnknownGroup
		}
		st, err := loadState(gb)
		if err != nil {
			return err
		}
		cb := gb.Bucket(bktCommits)
		if epoch != st.Epoch {
			rec, ok := unmarshalCommitRecord(cb.Get(u64key(epoch)))
			if !ok || rec.Digest != digest {
				res = CommitResult{Outcome: CommitConflict, Epoch: st.Epoch}
				return nil
			}
			res = CommitResult{Outcome: CommitDuplicate, Epoch: st.Epoch}
			if welcome == nil || rec.Welcome {
				return nil
			}
			rec.Welcome = true
			if err := cb.Put(u64key(epoch), rec.marshal()); err != nil {
				return err
			}
			e := OutboxEntry{Kind: OutboxWelcome, Num: epoch, Payload: nil, Welcome: welcome}
			if err := enqueue(tx, gb, group, &e); err != nil {
				return err
			}
			if err := logPut(gb, archWelcome, epoch, welcome); err != nil {
				return err
			}
			res.OutboxID = e.ID
			return nil
		}
		if err := cb.Put(u64key(epoch), commitRecord{Digest: digest, Welcome: welcome != nil}.marshal()); err != nil {
			return err
		}
		e := OutboxEntry{Kind: OutboxCommit, Num: epoch, Payload: commit, Welcome: welcome}
		if err := enqueue(tx, gb, group, &e); err != nil {
			return err
		}
		if err := logPut(gb, archCommit, epoch, commit); err != nil {
			return err
		}
		if welcome != nil {
			if err := logPut(gb, archWelcome, epoch, welcome); err != nil {
				return err
			}
		}
		st.Epoch++
		res = CommitResult{Outcome: CommitAccepted, Epoch: st.Epoch, OutboxID: e.ID}
		return gb.Put(keyState, st.marshal())
	})
	if err != nil {
		return CommitResult{}, err
	}
	return res, nil
}

func (s *BoltStore) Epoch(ctx context.Context, group string) (uint64, error) {
	var epoch uint64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		gb := tx.Bucket(bktGroups).Bucket([]byte(group))
		if gb == nil {
			return ErrUnknownGroup
		}
		st, err := loadState(gb)
		epoch = st.Epoch
		return err
	})
	return epoch, err
}

func (s *BoltStore) Outbox(ctx context.Context, group string) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		gb := tx.Bucket(bktGroups).Bucket([]byte(group))
		if gb == nil {
			return ErrUnknownGroup
		}
		return gb.Bucket(bktOutbox).ForEach(func(k, v []byte) error {
			e, err := unmarshalOutboxEntry(v)
			if err != nil {
				return fmt.Errorf("coord: corrupt outbox entry %x of group %q: %w", k, group, err)
			}
			e.ID = binary.BigEndian.Uint64(k)
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

func (s *BoltStore) Ack(ctx context.Context, group string, id uint64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		gb := tx.Bucket(bktGroups).Bucket([]byte(group))
		if gb == nil {
			return nil
		}
		ob := gb.Bucket(bktOutbox)
		if err := ob.Delete(u64key(id)); err != nil {
			return err
		}
		if k, _ := ob.Cursor().First(); k == nil {
			return tx.Bucket(bktPending).Delete([]byte(group))
		}
		return nil
	})
}

func (s *BoltStore) PendingGroups(ctx context.Context) ([]string, error) {
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bktPending).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Close closes the database. Later calls fail with ErrStoreClosed.
func (s *BoltStore) Close() error { return s.db.Close() }

// Outbox entry encoding (internal, not on the wire):
//
//	struct { uint8 kind; uint64 num; opaque payload<V>; optional<opaque welcome<V>>; }
func marshalOutboxEntry(e *OutboxEntry) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8(uint8(e.Kind))
	b.AddUint64(e.Num)
	wire.AddVector(&b, e.Payload)
	if e.Welcome == nil {
		b.AddUint8(0)
	} else {
		b.AddUint8(1)
		wire.AddVector(&b, e.Welcome)
	}
	return b.Bytes()
}

func unmarshalOutboxEntry(data []byte) (OutboxEntry, error) {
	s := cryptobyte.String(data)
	var e OutboxEntry
	var kind, present uint8
	if !s.ReadUint8(&kind) || !s.ReadUint64(&e.Num) {
		return e, corrupt(wire.ErrTruncated, "outbox entry")
	}
	e.Kind = OutboxKind(kind)
	p, err := wire.ReadVector(&s, "payload")
	if err != nil {
		return e, err
	}
	e.Payload = slices.Clone(p) // bbolt memory is only valid inside the transaction
	if !s.ReadUint8(&present) {
		return e, corrupt(wire.ErrTruncated, "welcome presence")
	}
	if present == 1 {
		w, err := wire.ReadVector(&s, "welcome")
		if err != nil {
			return e, err
		}
		e.Welcome = slices.Clone(w)
	}
	if !s.Empty() {
		return e, corrupt(wire.ErrTrailingData, "outbox entry")
	}
	return e, nil
}

// corrupt is the error of an outbox entry that does not decode; it wraps
// wire.ErrMalformed and kind, as the wire decoders' errors do.
func corrupt(kind error, what string) error {
	return fmt.Errorf("%w: %w: %s", wire.ErrMalformed, kind, what)
}
