package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/moqsframe/moqsframe/identity"
	"github.com/moqsframe/moqsframe/internal/proctest"
)

const sframePkg = "github.com/moqsframe/moqsframe/cmd/sframe"

// pkiDir is a deployment's certificates made with the sframe identity tool,
// as an operator would: a CA, then one certificate per name.
type pkiDir struct {
	t        testing.TB
	bin, dir string
	verifier *identity.Verifier
	policy   *identity.Policy

	mu      sync.Mutex
	n       int
	claimed map[string]bool // names with a certificate at DIR/NAME.pem
}

// newPKI makes a CA in a temporary folder and writes policy.json.
func newPKI(t testing.TB, policy string) *pkiDir {
	t.Helper()
	p := &pkiDir{t: t, bin: proctest.Build(t, sframePkg), dir: t.TempDir(), claimed: map[string]bool{}}
	p.run("identity", "ca", "-out", p.dir, "-name", "integration test CA")
	var err error
	if p.verifier, err = identity.LoadVerifier(p.path("ca.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.path("policy.json"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if p.policy, err = identity.LoadPolicy(p.path("policy.json")); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pkiDir) path(name string) string { return filepath.Join(p.dir, name) }

func (p *pkiDir) run(args ...string) {
	p.t.Helper()
	out, err := exec.Command(p.bin, args...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("sframe %v: %v\n%s", args, err, out)
	}
}

// issue makes a new key and certificate for name (extra: more flags of
// sframe identity issue) and returns it. The first certificate of a name
// is also left at DIR/NAME.pem and DIR/NAME.key; later ones (a restarted
// member's new key) go to their own folders.
func (p *pkiDir) issue(name string, extra ...string) *identity.Certificate {
	p.t.Helper()
	return p.issueWith(p.dir, name, extra...)
}

// issueWith issues from the CA in caDir (another CA: an outsider's).
func (p *pkiDir) issueWith(caDir, name string, extra ...string) *identity.Certificate {
	p.t.Helper()
	p.mu.Lock()
	out := p.dir
	if p.claimed[name] || caDir != p.dir {
		p.n++
		out = filepath.Join(p.dir, "more", strconv.Itoa(p.n))
	} else {
		p.claimed[name] = true
	}
	p.mu.Unlock()
	p.run(append([]string{"identity", "issue", "-ca", caDir, "-name", name, "-out", out}, extra...)...)
	c, err := identity.LoadCertificate(filepath.Join(out, name+".pem"), filepath.Join(out, name+".key"))
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// otherCA makes a second CA (an outsider's) and returns its folder.
func (p *pkiDir) otherCA() string {
	p.t.Helper()
	p.mu.Lock()
	p.n++
	dir := filepath.Join(p.dir, "other", strconv.Itoa(p.n))
	p.mu.Unlock()
	p.run("identity", "ca", "-out", dir, "-name", "outsider CA")
	return dir
}
