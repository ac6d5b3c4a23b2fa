package moq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestCreditGateOldestFirst drives the credit gate step by step: a freed
// credit goes to the oldest waiting stream; while the oldest contender is
// busy (between two objects) a freed credit waits for it rather than going
// to a newer stream; once it stops contending (a network read), the next
// oldest is served; a stream whose context ends gives up its place.
func TestCreditGateOldestFirst(t *testing.T) {
	in := newInbound()
	filler := &creditWaiter{id: 0}
	for range libraryQueueCredit {
		if !in.tryAcquire(filler) {
			t.Fatal("free credit refused")
		}
	}
	if in.tryAcquire(filler) {
		t.Fatal("credit beyond the limit")
	}
	in.leave(filler)

	ws := map[uint64]*creditWaiter{}
	got := map[uint64]chan bool{}
	cancels := map[uint64]context.CancelFunc{}
	for _, id := range []uint64{9, 5, 3} { // opened 3, 5, 9; arrive newest first
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		w, ch := &creditWaiter{id: id}, make(chan bool, 1)
		ws[id], got[id], cancels[id] = w, ch, cancel
		go func() { ch <- in.acquire(ctx, w) }()
	}
	waitFor(t, 10*time.Second, "three streams waiting", func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		return ws[3].waiting && ws[5].waiting && ws[9].waiting
	})

	in.release()
	if !<-got[3] {
		t.Fatal("stream 3 refused")
	}
	// Stream 3 is busy handing its object over: the next credit waits for it.
	in.release()
	in.mu.Lock()
	held, waiting5 := in.held, ws[5].waiting
	in.mu.Unlock()
	if held != libraryQueueCredit-1 || !waiting5 {
		t.Fatalf("credit given past the busy oldest stream: held %d, stream 5 waiting %v", held, waiting5)
	}
	if !in.tryAcquire(ws[3]) {
		t.Fatal("the oldest stream was refused the credit kept for it")
	}
	// Stream 3 reads from the network: stream 5 is next, then 9.
	in.leave(ws[3])
	in.release()
	if !<-got[5] {
		t.Fatal("stream 5 refused")
	}
	in.leave(ws[5])
	cancels[9]()
	if <-got[9] {
		t.Fatal("stream 9 got a credit after its context ended")
	}
	in.mu.Lock()
	n, held := len(in.contenders), in.held
	in.mu.Unlock()
	if n != 0 || held != libraryQueueCredit {
		t.Fatalf("after every stream left: %d contenders, %d held, want 0 and %d", n, held, libraryQueueCredit)
	}
}

// TestConnectionClosed: a write that failed because the whole connection
// ended is told apart from one stream failing or timing out, so a
// subscriber whose peer left is not counted as a disconnect.
func TestConnectionClosed(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&quic.ApplicationError{Remote: true, ErrorCode: 0}, true},
		{fmt.Errorf("write: %w", &quic.ApplicationError{Remote: true}), true},
		{&quic.TransportError{ErrorCode: quic.InternalError}, true},
		{&quic.IdleTimeoutError{}, true},
		{&quic.StreamError{StreamID: 2, ErrorCode: 1, Remote: true}, false},
		{os.ErrDeadlineExceeded, false},
		{errors.New("other"), false},
	} {
		if got := connectionClosed(c.err); got != c.want {
			t.Errorf("connectionClosed(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
