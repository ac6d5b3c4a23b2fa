package sidecar

import (
	"sync"

	"github.com/moqsframe/moqsframe/moq"
)

// publisherSet is a concurrency-safe map of publishers by (namespace, track).
type publisherSet struct {
	mu sync.Mutex
	m  map[string]*moq.Publisher
}

func (s *publisherSet) get(ns []string, track string, cfg *moq.Config) *moq.Publisher {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := moq.TrackKey(ns, track)
	p, ok := s.m[key]
	if !ok {
		p = moq.NewPublisher(ns, track, cfg)
		s.m[key] = p
	}
	return p
}

func (s *publisherSet) lookup(_ *moq.Session, ns []string, track string) (*moq.Publisher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.m[moq.TrackKey(ns, track)]; ok {
		return p, nil
	}
	return nil, moq.ErrUnknownTrack
}

func (s *publisherSet) subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.m {
		n += p.Subscribers()
	}
	return n
}

// dropped sums the publishers' objects dropped for full subscriber queues.
func (s *publisherSet) dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, p := range s.m {
		n += p.Stats().Dropped
	}
	return n
}

func (s *publisherSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.m {
		p.Close()
	}
}

// Publishers is anything that hands out publishers by track: a RelayClient
// or a LocalServer.
type Publishers interface {
	Publisher(namespace []string, track string) *moq.Publisher
}
