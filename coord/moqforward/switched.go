package moqforward

import (
	"context"
	"sync"
)

// Switched is a coord.Forwarder (and coord.AckForwarder) that holds a relay
// session only between On and Off. CS replicas sharing one store use it
// with an election (store.EtcdLeader's OnChange): the relay routes the
// CS's namespace prefix to its latest announcer, so only the elected
// forwarder may be connected. While off, Forward* fail with
// ErrNotConnected and the items stay queued for the elected replica.
type Switched struct {
	cfg Config
	mu  sync.Mutex
	f   *Forwarder
}

// NewSwitched returns a Switched forwarder that is off.
func NewSwitched(cfg Config) *Switched { return &Switched{cfg: cfg} }

// On connects to the relay (if not connected) and waits until the session
// is up or ctx ends; an error leaves it dialling in the background.
func (s *Switched) On(ctx context.Context) error {
	s.mu.Lock()
	if s.f == nil {
		f, err := New(s.cfg)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.f = f
	}
	f := s.f
	s.mu.Unlock()
	return f.WaitConnected(ctx)
}

// Off closes the relay session (the relay then routes to the next
// announcer).
func (s *Switched) Off() {
	s.mu.Lock()
	f := s.f
	s.f = nil
	s.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// Close is Off.
func (s *Switched) Close() error { s.Off(); return nil }

func (s *Switched) current() (*Forwarder, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, ErrNotConnected
	}
	return s.f, nil
}

func (s *Switched) ForwardRequest(ctx context.Context, group string, seq uint64, req []byte) error {
	f, err := s.current()
	if err != nil {
		return err
	}
	return f.ForwardRequest(ctx, group, seq, req)
}

func (s *Switched) ForwardCommit(ctx context.Context, group string, epoch uint64, commit []byte) error {
	f, err := s.current()
	if err != nil {
		return err
	}
	return f.ForwardCommit(ctx, group, epoch, commit)
}

func (s *Switched) ForwardWelcome(ctx context.Context, group string, epoch uint64, welcome []byte) error {
	f, err := s.current()
	if err != nil {
		return err
	}
	return f.ForwardWelcome(ctx, group, epoch, welcome)
}

func (s *Switched) ForwardAck(ctx context.Context, group string, epoch uint64, leaf uint32, ack []byte) error {
	f, err := s.current()
	if err != nil {
		return err
	}
	return f.ForwardAck(ctx, group, epoch, leaf, ack)
}
