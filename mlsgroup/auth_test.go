package mlsgroup

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/testpki"
)

// roomPolicy admits alice, bob and carol to "room".
func roomPolicy(t *testing.T) *identity.Policy {
	t.Helper()
	p, err := identity.ParsePolicy([]byte(`{"groups": {"room": ["alice", "bob", "carol"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// foreignKeyPackage is a KeyPackage of a member whose own checks use
// another CA or policy: the committer must judge it by its own.
func foreignKeyPackage(t *testing.T, pki *testpki.PKI, name string, o ...identity.IssueOptions) []byte {
	t.Helper()
	// The joiner trusts its own CA and admits itself; what it claims is
	// for the committer to check.
	m, err := NewMember(pki.Issue(t, name, o...), Authenticator{Verifier: pki.Verifier, Policy: identity.AllowAll()}, "room")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	kp, err := m.KeyPackage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestCommitterRefusesKeyPackages: the committer adds only KeyPackages whose
// credential verifies and whose name the policy admits, once.
func TestCommitterRefusesKeyPackages(t *testing.T) {
	ctx := context.Background()
	a := newMemberWith(t, "alice", roomPolicy(t))
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	other := testpki.New()
	for _, tc := range []struct {
		name string
		kp   []byte
		want error
	}{
		{"other CA", foreignKeyPackage(t, other, "bob"), identity.ErrUntrusted},
		{"not in policy", foreignKeyPackage(t, testPKI, "mallory"), identity.ErrNotAdmitted},
		{"existing member", foreignKeyPackage(t, testPKI, "alice"), ErrDuplicate},
		{"garbage", []byte{0, 1, 0, 2, 9}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.AddMember(ctx, tc.kp)
			if err == nil {
				t.Fatal("added")
			}
			if tc.want != nil && (!errors.Is(err, ErrRefused) || !errors.Is(err, tc.want)) {
				t.Fatalf("AddMember = %v, want ErrRefused and %v", err, tc.want)
			}
		})
	}
	// A certificate that expired: mls-go will not make a KeyPackage of one,
	// so the committer's clock is an hour ahead of a certificate valid for
	// half an hour.
	late, _ := identity.NewVerifier([]*x509.Certificate{testPKI.CA.Certificate},
		identity.WithClock(func() time.Time { return time.Now().Add(time.Hour) }))
	a2, err := NewMember(testPKI.Issue(t, "alice"), Authenticator{Verifier: late, Policy: roomPolicy(t)}, "room")
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if err := a2.Create(ctx); err != nil {
		t.Fatal(err)
	}
	short := foreignKeyPackage(t, testPKI, "bob", identity.IssueOptions{NotAfter: time.Now().Add(30 * time.Minute)})
	if err := a2.AddMember(ctx, short); !errors.Is(err, ErrRefused) || !errors.Is(err, identity.ErrExpired) {
		t.Fatalf("expired: %v", err)
	}

	// A second KeyPackage of a name already proposed in this epoch.
	if err := a.AddMember(ctx, foreignKeyPackage(t, testPKI, "bob")); err != nil {
		t.Fatal(err)
	}
	if err := a.AddMember(ctx, foreignKeyPackage(t, testPKI, "bob")); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second bob in one epoch: %v", err)
	}
	// Nothing refused made it into the commit: after it, alice and bob only.
	if _, _, err := a.StageCommit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ConfirmCommit(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := a.Roster(ctx)
	if err != nil || len(r) != 2 || r[0].Name != "alice" || r[1].Name != "bob" {
		t.Fatalf("roster %+v, %v", r, err)
	}
}

// TestRefusedCommitAndWelcome: a committer with a looser policy adds
// mallory; members whose policy does not admit her refuse the commit (their
// epoch and keys stay), and a joiner refuses the Welcome into a tree that
// holds her.
func TestRefusedCommitAndWelcome(t *testing.T) {
	ctx := context.Background()
	loose := newMember(t, "alice") // admits anyone with a certificate
	bob := newMemberWith(t, "bob", roomPolicy(t))
	if err := loose.Create(ctx); err != nil {
		t.Fatal(err)
	}
	addAndCommit(t, loose, bob)
	before, err := bob.KeyState(ctx, BaseKeyLen)
	if err != nil {
		t.Fatal(err)
	}

	mallory := newMember(t, "mallory")
	carol := newMemberWith(t, "carol", roomPolicy(t))
	for _, j := range []*Member{mallory, carol} {
		kp, err := j.KeyPackage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := loose.AddMember(ctx, kp); err != nil {
			t.Fatal(err)
		}
	}
	epoch, commit, err := loose.StageCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	welcome, err := loose.ConfirmCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}

	err = bob.ProcessCommit(ctx, epoch, commit)
	var re *RefusedError
	if !errors.Is(err, ErrRefused) || !errors.Is(err, identity.ErrNotAdmitted) || !errors.As(err, &re) || re.Name != "mallory" {
		t.Fatalf("bob processing mallory's add: %v", err)
	}
	after, err := bob.KeyState(ctx, BaseKeyLen)
	if err != nil || after.Epoch != before.Epoch || string(after.BaseKey) != string(before.BaseKey) {
		t.Fatalf("bob moved on after refusing: epoch %d -> %d, %v", before.Epoch, after.Epoch, err)
	}
	// The refused commit left bob's state as it was: he can still apply it
	// again (and refuse again), not fail on a half-applied tree.
	if err := bob.ProcessCommit(ctx, epoch, commit); !errors.Is(err, ErrRefused) {
		t.Fatalf("second try: %v", err)
	}

	joined, err := carol.Join(ctx, welcome)
	if joined || !errors.Is(err, ErrRefused) || !errors.Is(err, identity.ErrNotAdmitted) {
		t.Fatalf("carol joining a tree with mallory: joined=%v %v", joined, err)
	}
	if _, err := carol.KeyState(ctx, BaseKeyLen); !errors.Is(err, ErrNotMember) {
		t.Fatalf("carol after refusing: %v", err)
	}
	// mallory, who trusts anything, is in: the refusal is the others' choice.
	if ok, err := mallory.Join(ctx, welcome); !ok || err != nil {
		t.Fatalf("mallory: %v %v", ok, err)
	}
}

// TestReplaceMember: a restarted member (same name, new key) replaces its
// old leaf in one commit; the others see one entry with the new certificate.
func TestReplaceMember(t *testing.T) {
	ctx := context.Background()
	a, b := newMemberWith(t, "alice", roomPolicy(t)), newMemberWith(t, "bob", roomPolicy(t))
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	addAndCommit(t, a, b)
	b2 := newMemberWith(t, "bob", roomPolicy(t))
	kp, err := b2.KeyPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddMember(ctx, kp); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("AddMember of a second bob: %v", err)
	}
	if err := a.ReplaceMember(ctx, kp); err != nil {
		t.Fatal(err)
	}
	epoch, commit, err := a.StageCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	welcome, err := a.ConfirmCommit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := b2.Join(ctx, welcome); !ok || err != nil {
		t.Fatalf("new bob: %v %v", ok, err)
	}
	if err := b.ProcessCommit(ctx, epoch, commit); !errors.Is(err, ErrRemoved) {
		t.Fatalf("old bob: %v", err)
	}
	assertSameKeys(t, epoch+1, a, b2)
	r, err := a.Roster(ctx)
	if err != nil || len(r) != 2 || r[1].Name != "bob" {
		t.Fatalf("roster %+v, %v", r, err)
	}
	if r[1].Fingerprint == "" || r[1].Fingerprint == fingerprint(t, b) {
		t.Fatal("bob's leaf still has the old certificate")
	}
	// A member never replaces itself: only the other side of a restart can.
	a2 := newMemberWith(t, "alice", roomPolicy(t))
	kp, _ = a2.KeyPackage(ctx)
	if err := a.ReplaceMember(ctx, kp); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("alice replacing herself: %v", err)
	}
}

func fingerprint(t *testing.T, m *Member) string {
	t.Helper()
	id, err := testPKI.Verifier.Verify([][]byte{m.identity}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id.FingerprintHex()
}

// TestOwnCredentialChecked: a member cannot start with a credential that
// the others would refuse.
func TestOwnCredentialChecked(t *testing.T) {
	other := testpki.New()
	auth := Authenticator{Verifier: testPKI.Verifier, Policy: roomPolicy(t)}
	if _, err := NewMember(other.Issue(t, "alice"), auth, "room"); !errors.Is(err, identity.ErrUntrusted) {
		t.Fatalf("other CA: %v", err)
	}
	if _, err := NewMember(testPKI.Issue(t, "mallory"), auth, "room"); !errors.Is(err, identity.ErrNotAdmitted) {
		t.Fatalf("not admitted: %v", err)
	}
	c := testPKI.Issue(t, "alice")
	c.Key = testPKI.Issue(t, "bob").Key
	if _, err := NewMember(c, auth, "room"); !errors.Is(err, identity.ErrKeyMismatch) {
		t.Fatalf("key of another certificate: %v", err)
	}
}
