package coord

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord/store"
	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
)

// TestUnprocessable: the newest commit can be withdrawn once the grace has
// passed with nobody acknowledging the epoch after it; not sooner, not
// after an acknowledgement, and never an older one. Both stores.
func TestUnprocessable(t *testing.T) {
	stores := storeImpls(t)
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			cs := newTestCS(t, open(t), func(c *Config) { c.Now = clock.Now; c.UnprocessableGrace = 5 * time.Second })
			ctx := context.Background()
			c := cs.client
			if _, err := c.Join(ctx, "g", wiretest.KeyPackage("A")); err != nil {
				t.Fatal(err)
			}
			commit := func(epoch uint64, body string) error {
				return c.Commit(ctx, "g", epoch, wiretest.Handshake("g", epoch, wire.ContentTypeCommit, body), nil)
			}
			status := func(err error) int {
				var se *StatusError
				if errors.As(err, &se) {
					return se.Code
				}
				t.Fatalf("want a status error, got %v", err)
				return 0
			}
			if err := commit(0, "junk"); err != nil {
				t.Fatal(err)
			}
			err := c.ReportUnprocessable(ctx, "g", 0)
			var se *StatusError
			if status(err) != http.StatusTooEarly || !errors.As(err, &se) || se.Reason != ReasonTooEarly || se.RetryAfter != 5*time.Second {
				t.Fatalf("at once: %v", err)
			}
			clock.Advance(5 * time.Second)
			if err := c.ReportUnprocessable(ctx, "g", 0); err != nil {
				t.Fatalf("after the grace: %v", err)
			}
			if e, _, err := c.State(ctx, "g"); err != nil || e != 0 {
				t.Fatalf("state after withdrawing: epoch %d, %v", e, err)
			}
			if _, err := c.CommitAt(ctx, "g", 0); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("withdrawn commit still archived: %v", err)
			}
			// The next commit for epoch 0 is taken, and it is processed by
			// someone: its epoch is acknowledged, so it stays.
			if err := commit(0, "good"); err != nil {
				t.Fatalf("replacement: %v", err)
			}
			if err := c.Ack(ctx, "g", 1, 0, ""); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Minute)
			if err := c.ReportUnprocessable(ctx, "g", 0); status(err) != http.StatusConflict {
				t.Fatalf("acknowledged: %v", err)
			}
			// Only the newest commit, and only one that exists.
			if err := commit(1, "next"); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Minute)
			if err := c.ReportUnprocessable(ctx, "g", 0); status(err) != http.StatusConflict {
				t.Fatalf("older commit: %v", err)
			}
			if err := c.ReportUnprocessable(ctx, "g", 7); status(err) != http.StatusNotFound {
				t.Fatalf("future epoch: %v", err)
			}
			if n := cs.srv.Metrics().Refused(ReasonCommitProcessed); n != 2 {
				t.Fatalf("commit_processed refusals %d", n)
			}
		})
	}
}
