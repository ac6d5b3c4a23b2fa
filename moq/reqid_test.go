package moq

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Request IDs: v0.5.0 starts at 100 and the receiver raises the limit only
// on SUBSCRIBE/FETCH. Many SUBSCRIBEs on one session (a relay's upstream
// side) must keep working; ANNOUNCEs are limited (see docs/moq.md).
func TestManyRequestsOnOneSession(t *testing.T) {
	p := newPair(t, &Config{OnAnnounce: func(*Session, []string) error { return nil }}, nil)
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := p.client.Announce(ctx, []string{fmt.Sprint(i)})
		cancel()
		if err != nil {
			t.Fatalf("announce %d: %v", i, err)
		}
	}
	for i := 0; i < 300; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := p.client.Subscribe(ctx, []string{fmt.Sprint(i)}, "x")
		cancel()
		if err != nil && !errorsIsUnknown(err) {
			t.Fatalf("subscribe %d: %v", i, err)
		}
	}
}

func errorsIsUnknown(err error) bool { return errors.Is(err, ErrUnknownTrack) }
