package integration

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/coord"
	"github.com/moqsframe/moqsframe/group"
	"github.com/moqsframe/moqsframe/internal/proctest"
)

// Group lifecycle with real processes (issue 12): the relay and the CS run
// as processes (groupEnv), and the members that crash or leave are
// sframe-sidecar processes in group mode.

// groupSidecar starts sframe-sidecar in group mode (decrypt to a file) as
// identity name, with the certificate the PKI left at DIR/NAME.pem.
func (e *groupEnv) groupSidecar(name, groupName string) *proctest.Proc {
	e.t.Helper()
	return proctest.Start(e.t, "sframe-sidecar "+name, proctest.Build(e.t, sidecarPkg),
		"-mode", "decrypt", "-namespace", "media/"+name, "-out-file", filepath.Join(e.t.TempDir(), name+".rec"),
		"-relay", e.relayAddr, "-cs", e.csURL, "-group", groupName,
		"-identity-cert", e.pki.path(name+".pem"), "-identity-key", e.pki.path(name+".key"),
		"-trust-anchor", e.pki.path("ca.pem"), "-policy", e.pki.path("policy.json"),
		"-metrics", "", "-log-level", "info")
}

// waitOutput waits until p printed want.
func waitOutput(t *testing.T, p *proctest.Proc, want string) {
	t.Helper()
	deadline := time.Now().Add(groupWait)
	for !strings.Contains(p.Output(), want) {
		if p.Exited() {
			t.Fatalf("%s exited before printing %q", p, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q", p, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRoster waits until m's verified roster is exactly names (sorted).
func waitRoster(t *testing.T, m *group.Member, names ...string) {
	t.Helper()
	deadline := time.Now().Add(groupWait)
	for {
		var got []string
		for _, e := range m.Roster() {
			got = append(got, e.Name)
		}
		if strings.Join(got, ",") == strings.Join(names, ",") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: roster %v, want %v", m.Identity(), got, names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGroupSilentMemberRemovedProcesses: a member process killed with
// SIGKILL stops heartbeating; the survivor (liveness timeout 3 s) sees it
// silent and commits its removal, and the killed identity, started again,
// rejoins normally.
func TestGroupSilentMemberRemovedProcesses(t *testing.T) {
	e := newGroupEnv(t)
	const timeout, beat = 3 * time.Second, 300 * time.Millisecond
	alice := e.member("alice", "room", e.session(), func(c *group.Config) {
		c.LivenessTimeout, c.HeartbeatInterval = timeout, beat
	})
	t0 := time.Now()
	joinAll(t, alice)
	e.pki.issue("bob")
	bob := e.groupSidecar("bob", "room")
	waitRoster(t, alice, "alice", "bob")
	t.Logf("bob in after %v", time.Since(t0))
	bob.Kill()
	killed := time.Now()
	deadline := killed.Add(groupWait)
	for alice.Stats().RemovedForSilence != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("bob not removed for silence: %+v", alice.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(killed)
	waitRoster(t, alice, "alice")
	// The CS last heard bob at most one heartbeat interval before the kill.
	if took < timeout-beat {
		t.Fatalf("bob removed %v after the kill, sooner than the liveness timeout %v", took, timeout)
	}
	t.Logf("SIGKILLed member removed %v after the kill (timeout %v)", took.Round(time.Millisecond), timeout)
	var sawSilent bool
	for len(alice.Events()) > 0 {
		if ev := <-alice.Events(); ev.Type == group.EventSilent && strings.Join(ev.Silent, ",") == "bob" {
			sawSilent = true
		}
	}
	if !sawSilent {
		t.Error("no EventSilent naming bob")
	}
	if st := alice.Stats(); st.SilentMembers != 0 || st.HeartbeatsSent == 0 {
		t.Errorf("stats after the removal %+v", st)
	}

	// bob comes back with the same certificate: a normal join.
	bob2 := e.groupSidecar("bob", "room")
	waitRoster(t, alice, "alice", "bob")
	waitOutput(t, bob2, "joined security group")
	t.Logf("bob back after %v", time.Since(t0))
}

// TestGroupLastMembersLeaveProcesses: two member processes stopped with
// SIGTERM at the same time both leave at once (the last one retires the
// group at the CS instead of waiting for a commit), the CS forgets the
// group, and a third member creates it afresh (201, epoch 0) and works.
func TestGroupLastMembersLeaveProcesses(t *testing.T) {
	e := newGroupEnv(t)
	e.pki.issue("bob")
	e.pki.issue("carol")
	bob := e.groupSidecar("bob", "room")
	waitOutput(t, bob, "joined security group")
	carol := e.groupSidecar("carol", "room")
	waitOutput(t, carol, "joined security group")
	ctx := context.Background()
	// carol is in once the CS has the commit that added her.
	deadline := time.Now().Add(groupWait)
	for {
		if ep, _, err := e.admin.State(ctx, "room"); err == nil && ep >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("carol's join was not committed")
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	errs := make(chan error, 2)
	for _, p := range []*proctest.Proc{bob, carol} {
		go func() { errs <- p.Stop(t) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	}
	t.Logf("both members stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	for _, p := range []*proctest.Proc{bob, carol} {
		if strings.Contains(p.Output(), "leaving the security group") {
			t.Errorf("%s did not leave cleanly:\n%s", p, p.Output())
		}
	}
	if _, _, err := e.admin.State(ctx, "room"); !errors.Is(err, coord.ErrUnknownGroup) {
		t.Fatalf("the CS still has the group after its last members left: %v", err)
	}

	// dave's join creates the group afresh (a Welcome could only come from
	// a member: nobody is left).
	dave := e.member("dave", "room", e.session(), nil)
	joinAll(t, dave)
	if dave.Epoch() != 0 || len(dave.Roster()) != 1 {
		t.Fatalf("dave joined at epoch %d with %d members, want the new group's creator", dave.Epoch(), len(dave.Roster()))
	}
	erin := e.member("erin", "room", e.session(), nil)
	joinAll(t, erin)
	convergeAll(t, 1, groupWait, dave, erin)
	checkMedia(t, dave, 1, []*group.Member{erin}, nil)
	checkMedia(t, erin, 2, []*group.Member{dave}, nil)
}
