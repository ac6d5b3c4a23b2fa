package coord

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/moqsframe/moqsframe/coord/wire"
)

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
	a, err := wire.UnmarshalEpochAck(body)
	if err != nil {
		s.fail(w, ep, http.StatusBadRequest, group, "body is not a valid EpochAck struct (see docs/security-groups.md): "+err.Error())
		return
	}
	if string(a.GroupID) != group {
		s.fail(w, ep, http.StatusBadRequest, group, fmt.Sprintf("EpochAck.group_id %q does not match the URL group %q", a.GroupID, group))
		return
	}
	if _, ok := s.decidedEpoch(w, r, ep, group, a.Epoch); !ok {
		return
	}
	heard := string(a.Identity)
	if s.auth != nil {
		// Stamp the poster's authenticated name, so that members can count
		// the ack only for a leaf that holds that name.
		id := callerIdentity(r)
		if len(a.Identity) > 0 && string(a.Identity) != id {
			s.refuse(w, ep, group, id, &RefusedError{Code: http.StatusForbidden, Reason: ReasonAckIdentityMismatch,
				Message: fmt.Sprintf("EpochAck.identity %q is not the client certificate's name %q; leave it empty", a.Identity, id)})
			return
		}
		a.Identity, heard = []byte(id), id
		if body, err = a.Marshal(); err != nil {
			s.fail(w, ep, http.StatusBadRequest, group, "cannot encode the stamped EpochAck: "+err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.fwdTO)
	defer cancel()
	forward := s.fwd.(AckForwarder).ForwardAck
	if s.leader != nil && s.leader.Leading() == nil {
		forward = s.leader.QueueAck // the elected replica publishes it
	}
	if err := forward(ctx, group, a.Epoch, a.Leaf, body); err != nil {
		s.fail(w, ep, http.StatusServiceUnavailable, group, "the CS could not forward the acknowledgement right now: "+err.Error())
		return
	}
	s.recent.ack(group, a.Epoch)
	s.heard(ctx, group, heard, a.Leaf, a.Epoch)
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
	enc, err := (&wire.EpochAck{GroupID: []byte(group), Epoch: epoch, Leaf: leaf, Identity: []byte(name)}).Marshal()
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
