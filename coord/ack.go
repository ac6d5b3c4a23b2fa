package coord

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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
// authentication (Config.Auth) replaces it with the name of the poster's
// client certificate before forwarding, so that members count an ack only
// if the roster's identity at leaf_index is that name (the CS holds no MLS
// state and cannot map leaves to names itself). A CS without Auth forwards
// it as posted: unauthenticated.
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
	addOpaqueV(&b, a.GroupID)
	b.AddUint64(a.Epoch)
	b.AddUint32(a.Leaf)
	addOpaqueV(&b, a.Identity)
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
	if a.Identity, err = readAnyOpaqueV(&s, "identity"); err != nil {
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

// AckForwarder is implemented by Forwarders that also carry epoch
// acknowledgements. The server offers POST .../acks only if its Forwarder
// implements it. Acks are not stored: they matter for a moment, and a lost
// one costs a sender its roll-over timeout, nothing more.
type AckForwarder interface {
	ForwardAck(ctx context.Context, group string, epoch uint64, leaf uint32, ack []byte) error
}

// ErrAckUnsupported is returned by Client.Ack when the CS does not relay
// acknowledgements (its forwarder has no AckForwarder).
var ErrAckUnsupported = errors.New("coord: this CS does not relay epoch acknowledgements")

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	const ep = "acks"
	group, body, ok := s.readBody(w, r, ep)
	if !ok {
		return
	}
	a, err := UnmarshalEpochAck(body)
	if err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "body is not a valid EpochAck struct (see docs/security-groups.md): "+err.Error())
		return
	}
	if string(a.GroupID) != group {
		s.fail(w, ep, http.StatusBadRequest, group, fmt.Sprintf("EpochAck.group_id %q does not match the URL group %q", a.GroupID, group))
		return
	}
	cur, err := s.store.Epoch(r.Context(), group)
	if s.failRead(w, ep, group, err) {
		return
	}
	if a.Epoch > cur {
		s.fail(w, ep, http.StatusBadRequest, group, fmt.Sprintf("epoch %d is not decided yet (the group is at epoch %d)", a.Epoch, cur))
		return
	}
	if s.auth != nil {
		// Stamp the poster's authenticated name, so that members can count
		// the ack only for a leaf that holds that name.
		id := callerIdentity(r)
		if len(a.Identity) > 0 && string(a.Identity) != id {
			s.refuse(w, ep, group, id, &RefusedError{Code: http.StatusForbidden, Reason: ReasonAckIdentityMismatch,
				Message: fmt.Sprintf("EpochAck.identity %q is not the client certificate's name %q; leave it empty", a.Identity, id)})
			return
		}
		a.Identity = []byte(id)
		if body, err = a.Marshal(); err != nil {
			s.fail(w, ep, http.StatusBadRequest, group, "cannot encode the stamped EpochAck: "+err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.fwdTO)
	defer cancel()
	if err := s.fwd.(AckForwarder).ForwardAck(ctx, group, a.Epoch, a.Leaf, body); err != nil {
		s.fail(w, ep, http.StatusServiceUnavailable, group, "the CS could not forward the acknowledgement right now: "+err.Error())
		return
	}
	s.recent.ack(group, a.Epoch)
	s.metrics.response(ep, http.StatusOK)
	e := a.Epoch
	writeJSON(w, http.StatusOK, okBody{Group: group, Epoch: &e})
}

// Ack tells the group (through the CS's AckTrack) that this member, at
// leaf, holds epoch's keys. name is the member's identity (the name in its
// certificate): a CS with authentication refuses it (403) unless it is the
// name of this client's certificate, and forwards it; members count an ack
// only if name is the identity at leaf. Errors:
// ErrAckUnsupported, *StatusError (400 future epoch, 404, 401/403/429 with
// errors.Is ErrUnauthenticated/ErrForbidden/ErrTooManyRequests, 503).
func (c *Client) Ack(ctx context.Context, group string, epoch uint64, leaf uint32, name string) error {
	enc, err := (&EpochAck{GroupID: []byte(group), Epoch: epoch, Leaf: leaf, Identity: []byte(name)}).Marshal()
	if err != nil {
		return err
	}
	a, err := c.do(ctx, http.MethodPost, group, "acks", enc)
	if err != nil {
		return err
	}
	switch a.code {
	case http.StatusOK:
		return nil
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		if a.err.Group == "" {
			return ErrAckUnsupported // no such route
		}
	}
	return a.statusErr()
}
