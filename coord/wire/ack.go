package wire

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// EpochAck is the body of POST /v1/groups/{group}/acks and the payload of
// AckTrack objects: a member reports that it holds the keys of an epoch,
// for coordinated key roll-over (senders switch to a new epoch once every
// member acknowledged it, or after a timeout; docs/security-groups.md):
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    uint32 leaf_index;   // the sender's leaf in that epoch
//	    opaque identity<V>;  // the poster's authenticated name, stamped by the CS (may be empty)
//	} EpochAck;
//
// identity is the only vector of our wire structs that may be empty: a
// member posts it empty (or equal to its own name), and a CS with
// authentication (coord.Config.Auth) replaces it with the name of the
// poster's client certificate before forwarding, so that members count an
// ack only if the roster's identity at leaf_index is that name (the CS holds
// no MLS state and cannot map leaves to names itself). A CS without Auth
// forwards it as posted: unauthenticated.
type EpochAck struct {
	GroupID  []byte
	Epoch    uint64
	Leaf     uint32
	Identity []byte // empty when posted; the poster's name on the ack track
}

// MaxAckIdentityLen bounds EpochAck.identity (member names are at most
// identity.MaxNameLen bytes; the wire allows more for other schemes).
const MaxAckIdentityLen = 255

// Marshal encodes a.
func (a *EpochAck) Marshal() ([]byte, error) {
	if err := checkField("group_id", a.GroupID, MaxGroupIDLen); err != nil {
		return nil, err
	}
	if len(a.Identity) > MaxAckIdentityLen {
		return nil, fmt.Errorf("coord: identity is %d bytes, limit %d", len(a.Identity), MaxAckIdentityLen)
	}
	var b cryptobyte.Builder
	AddVector(&b, a.GroupID)
	b.AddUint64(a.Epoch)
	b.AddUint32(a.Leaf)
	AddVector(&b, a.Identity)
	return b.Bytes()
}

// UnmarshalEpochAck decodes an EpochAck strictly. Errors wrap ErrMalformed.
func UnmarshalEpochAck(data []byte) (*EpochAck, error) {
	s := cryptobyte.String(data)
	var a EpochAck
	var err error
	if a.GroupID, err = readOpaqueV(&s, "group_id", MaxGroupIDLen); err != nil {
		return nil, err
	}
	if !s.ReadUint64(&a.Epoch) {
		return nil, malformed(ErrTruncated, "epoch")
	}
	if !s.ReadUint32(&a.Leaf) {
		return nil, malformed(ErrTruncated, "leaf_index")
	}
	if a.Identity, err = ReadVector(&s, "identity"); err != nil {
		return nil, err
	}
	if len(a.Identity) > MaxAckIdentityLen {
		return nil, malformed(ErrFieldTooLarge, "identity is %d bytes, limit %d", len(a.Identity), MaxAckIdentityLen)
	}
	if len(a.Identity) == 0 {
		a.Identity = nil // so that a decoded empty identity equals a zero EpochAck's
	}
	if !s.Empty() {
		return nil, malformed(ErrTrailingData, "%d bytes after EpochAck", len(s))
	}
	return &a, nil
}
