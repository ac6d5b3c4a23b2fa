package wire_test

// The MLS framing readers on real messages of the MLS library the members
// use (mlsgroup), and the fuzz target of ProposalSender seeded with them.

import (
	"context"
	"testing"

	"github.com/moqsframe/moqsframe/coord/wire"
	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/testpki"
	"github.com/moqsframe/moqsframe/mlsgroup"
)

// testPKI is the deployment CA of the members making the messages.
var testPKI = testpki.New()

func realMessages(t testing.TB) (kp, leave []byte) {
	ctx := context.Background()
	auth := mlsgroup.Authenticator{Verifier: testPKI.Verifier, Policy: identity.AllowAll()}
	a, err := mlsgroup.NewMember(testPKI.Issue(t, "alice"), auth, "g")
	if err != nil {
		t.Fatal(err)
	}
	b, err := mlsgroup.NewMember(testPKI.Issue(t, "bob-the-joiner"), auth, "g")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	kp, err = b.KeyPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leave, err = a.Leave(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return kp, leave
}

func TestParsersRealMessages(t *testing.T) {
	kp, leave := realMessages(t)
	e, leaf, err := wire.ProposalSender(leave)
	if err != nil || e != 0 || leaf != 0 {
		t.Fatalf("ProposalSender = %d %d %v", e, leaf, err)
	}
	if _, _, err := wire.ProposalSender(leave[:10]); err == nil {
		t.Fatal("truncated proposal accepted")
	}
	// The KeyPackage reader on a real mls-go KeyPackage: the X.509
	// credential and the signature key it carries verify together.
	l, err := wire.ParseKeyPackageLeaf(kp)
	if err != nil || l.CredentialType != wire.CredentialX509 || l.CipherSuite != uint16(mlsgroup.CipherSuite) {
		t.Fatalf("ParseKeyPackageLeaf = %+v, %v", l, err)
	}
	id, err := testPKI.Verifier.Verify(l.Certificates, l.SignatureKey)
	if err != nil || id.Name != "bob-the-joiner" {
		t.Fatalf("KeyPackage credential: %+v %v", id, err)
	}
	for i := range kp {
		if _, err := wire.ParseKeyPackageLeaf(kp[:i]); err == nil && i < 200 {
			t.Fatalf("truncated KeyPackage (%d bytes) accepted", i)
		}
	}
}

func FuzzProposalSender(f *testing.F) {
	kp, leave := realMessages(f)
	f.Add(kp)
	f.Add(leave)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = wire.ProposalSender(b)
	})
}
