package coord

import (
	"context"
	"slices"
	"sync"
)

// Forwarder publishes accepted items on the group's MoQ tracks. The MoQ
// implementation lives elsewhere; Recorder is an in-memory one for tests.
//
// Track layout (see docs/coordination-service.md): namespace [..., group],
// track names "request", "commit", "welcome".
//   - ForwardRequest: RequestTrack object, MoQ group ID = seq, object ID 0.
//   - ForwardCommit:  CommitTrack object, MoQ group ID = epoch (the epoch in
//     which the Commit was made), object ID 0.
//   - ForwardWelcome: WelcomeTrack object, MoQ group ID = epoch of the Commit
//     it belongs to, object ID 0.
//
// Delivery is at-least-once: after a crash the server forwards entries again
// whose acknowledgement was not recorded. Each item has a fixed (track, MoQ
// group, object) position and fixed bytes, so a repeat is an identical
// object and implementations should treat it as idempotent. A nil return
// means the object was handed to the relay; an error leaves it queued.
type Forwarder interface {
	ForwardRequest(ctx context.Context, group string, seq uint64, req []byte) error
	ForwardCommit(ctx context.Context, group string, epoch uint64, commit []byte) error
	ForwardWelcome(ctx context.Context, group string, epoch uint64, welcome []byte) error
}

// Forwarded is one item recorded by Recorder.
type Forwarded struct {
	Track string // "request", "commit", "welcome" or "ack"
	Group string
	Num   uint64 // seq for requests, epoch for commits, welcomes and acks
	Data  []byte
}

// Recorder is a Forwarder that records what it is given. Fail, if set, is
// consulted first; a non-nil result is returned and nothing is recorded.
type Recorder struct {
	mu    sync.Mutex
	items []Forwarded
	Fail  func(track, group string, num uint64) error
}

func (r *Recorder) record(track, group string, num uint64, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Fail != nil {
		if err := r.Fail(track, group, num); err != nil {
			return err
		}
	}
	r.items = append(r.items, Forwarded{Track: track, Group: group, Num: num, Data: slices.Clone(data)})
	return nil
}

// SetFail replaces the failure hook (safe while the server runs).
func (r *Recorder) SetFail(f func(track, group string, num uint64) error) {
	r.mu.Lock()
	r.Fail = f
	r.mu.Unlock()
}

func (r *Recorder) ForwardRequest(_ context.Context, group string, seq uint64, req []byte) error {
	return r.record("request", group, seq, req)
}

func (r *Recorder) ForwardCommit(_ context.Context, group string, epoch uint64, commit []byte) error {
	return r.record("commit", group, epoch, commit)
}

func (r *Recorder) ForwardWelcome(_ context.Context, group string, epoch uint64, welcome []byte) error {
	return r.record("welcome", group, epoch, welcome)
}

func (r *Recorder) ForwardAck(_ context.Context, group string, epoch uint64, _ uint32, ack []byte) error {
	return r.record("ack", group, epoch, ack)
}

// Items returns a copy of everything recorded so far, in order.
func (r *Recorder) Items() []Forwarded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items)
}

// Track returns the recorded items of one track and group, in order.
func (r *Recorder) Track(track, group string) []Forwarded {
	var out []Forwarded
	for _, it := range r.Items() {
		if it.Track == track && it.Group == group {
			out = append(out, it)
		}
	}
	return out
}
