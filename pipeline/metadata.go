package pipeline

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Limits of MoQT draft-11 §2.4.1 (Full Track Name) and RFC 9000 varints.
const (
	MaxNamespaceFields = 32
	MaxFullTrackName   = 4096
	MaxVarint          = 1<<62 - 1
)

// Errors about object identity.
var (
	ErrInvalidTrack = errors.New("pipeline: invalid track name")
	ErrIDTooLarge   = errors.New("pipeline: group or object ID above 2^62-1 cannot be encoded")
)

// A Track is a MoQ track and the SFrame keys its objects use. Its identity
// is fixed at creation, and its serialized form is computed once.
type Track struct {
	namespace []string
	name      string
	meta      []byte // varint count, (varint len, field)..., varint len, name
	shard     uint32 // worker this track's objects go to, for ordering

	// Sealer encrypts the track's objects in sealing stages, Opener decrypts
	// them in opening stages. Set them before the track is used.
	Sealer Sealer
	Opener Opener
}

// Sealer is what seals an object: an *sframe.Sender, or a key schedule.
type Sealer interface {
	Seal(dst, metadata, plaintext []byte) ([]byte, error)
}

// Opener is what opens an object: an *sframe.Receiver, or a key schedule.
type Opener interface {
	Open(dst, metadata, ciphertext []byte) ([]byte, error)
}

var nextShard atomic.Uint32

// NewTrack returns the track (namespace, name), checking MoQT's limits: 1 to
// 32 namespace fields and a full track name of at most 4096 bytes.
func NewTrack(namespace []string, name string) (*Track, error) {
	if len(namespace) == 0 || len(namespace) > MaxNamespaceFields {
		return nil, fmt.Errorf("%w: namespace has %d fields, want 1 to %d", ErrInvalidTrack, len(namespace), MaxNamespaceFields)
	}
	size := len(name)
	for _, f := range namespace {
		size += len(f)
	}
	if size > MaxFullTrackName {
		return nil, fmt.Errorf("%w: full track name is %d bytes, limit %d", ErrInvalidTrack, size, MaxFullTrackName)
	}
	meta := AppendVarint(nil, uint64(len(namespace)))
	for _, f := range namespace {
		meta = AppendVarint(meta, uint64(len(f)))
		meta = append(meta, f...)
	}
	meta = AppendVarint(meta, uint64(len(name)))
	meta = append(meta, name...)
	return &Track{
		namespace: append([]string(nil), namespace...),
		name:      name,
		meta:      meta,
		shard:     nextShard.Add(1),
	}, nil
}

// Namespace returns the track namespace's fields.
func (t *Track) Namespace() []string { return append([]string(nil), t.namespace...) }

// Name returns the track name.
func (t *Track) Name() string { return t.name }

// String returns the track as namespace fields and name joined by "/".
func (t *Track) String() string {
	s := ""
	for _, f := range t.namespace {
		s += f + "/"
	}
	return s + t.name
}

// AppendMetadata appends the SFrame metadata of object (group, object) in
// this track to dst: the serialized full track name of
// draft-ietf-moq-secure-objects (namespace as a varint count of
// varint-length-prefixed fields, then the name, varint-length-prefixed),
// followed by the group ID and the object ID as varints. See
// docs/metadata.md.
func (t *Track) AppendMetadata(dst []byte, group, object uint64) ([]byte, error) {
	if group > MaxVarint || object > MaxVarint {
		return dst, ErrIDTooLarge
	}
	dst = append(dst, t.meta...)
	dst = AppendVarint(dst, group)
	return AppendVarint(dst, object), nil
}

// AppendVarint appends v as a QUIC variable-length integer (RFC 9000 §16).
// v must be at most MaxVarint.
func AppendVarint(dst []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(dst, byte(v))
	case v < 1<<14:
		return append(dst, 0x40|byte(v>>8), byte(v))
	case v < 1<<30:
		return append(dst, 0x80|byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, 0xc0|byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
