package mlsgroup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/identity"
	mlsgo "github.com/thomas-vilte/mls-go/group"
)

// BenchmarkCommitValidation measures what X.509 validation adds to a
// commit: every member verifies every leaf of the new tree (checkRoster),
// next to processing the commit itself (mls-go) in the same run. The
// ratio metric is validation / processing.
func BenchmarkCommitValidation(b *testing.B) {
	for _, n := range []int{2, 10, 50} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ctx := context.Background()
			auth := Authenticator{Verifier: testPKI.Verifier, Policy: identity.AllowAll()}
			mk := func(name string) *Member {
				m, err := NewMember(testPKI.Issue(b, name), auth, "room")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { m.Close() })
				return m
			}
			a, obs := mk("m0"), mk("observer")
			if err := a.Create(ctx); err != nil {
				b.Fatal(err)
			}
			join := func(j *Member, others ...*Member) (uint64, []byte) {
				kp, err := j.KeyPackage(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := a.AddMember(ctx, kp); err != nil {
					b.Fatal(err)
				}
				e, commit, err := a.StageCommit(ctx)
				if err != nil {
					b.Fatal(err)
				}
				w, err := a.ConfirmCommit(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if ok, err := j.Join(ctx, w); !ok || err != nil {
					b.Fatal(ok, err)
				}
				for _, o := range others {
					if err := o.ProcessCommit(ctx, e, commit); err != nil {
						b.Fatal(err)
					}
				}
				return e, commit
			}
			join(obs)
			for i := 1; i < n-1; i++ {
				join(mk(fmt.Sprintf("m%d", i)), obs)
			}
			// One more commit, which obs processes again and again from
			// the same saved state.
			gid := obs.group
			pre, err := obs.store.LoadGroupState(ctx, mlsgo.NewGroupID(gid))
			if err != nil {
				b.Fatal(err)
			}
			_, commit := join(mk(fmt.Sprintf("m%d", n-1)))
			var process, validate float64
			b.ResetTimer()
			for b.Loop() {
				if err := obs.store.SaveGroupState(ctx, mlsgo.NewGroupID(gid), pre); err != nil {
					b.Fatal(err)
				}
				obs.mu.Lock()
				obs.roster = nil
				t0 := time.Now()
				if err := obs.c.ProcessCommit(ctx, obs.group, commit); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				r, err := obs.checkRoster(ctx)
				t2 := time.Now()
				obs.mu.Unlock()
				if err != nil || len(r) != n+1 {
					b.Fatalf("roster %d, %v", len(r), err)
				}
				process += float64(t1.Sub(t0))
				validate += float64(t2.Sub(t1))
			}
			b.ReportMetric(validate/float64(b.N)/1e3, "µs-validate/commit")
			b.ReportMetric(process/float64(b.N)/1e3, "µs-process/commit")
			b.ReportMetric(validate/process, "validate/process")
		})
	}
}
