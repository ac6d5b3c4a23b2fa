package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, code := runCLI(t, nil, args...)
	if code != 0 {
		t.Fatalf("%q: exit %d, stderr %q", args, code, stderr)
	}
	return out
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkKeyMode(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, st.Mode().Perm())
	}
}

func TestIdentityHelp(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // in stdout, or in stderr when code != 0
	}{
		{[]string{"identity", "-h"}, 0, "sframe identity issue -ca DIR -name NAME -out DIR"},
		{[]string{"identity", "help"}, 0, "sframe identity show  [-ca CA.pem] FILE.pem"},
		{[]string{"identity", "ca", "-h"}, 0, "-out string"},
		{[]string{"identity", "issue", "-h"}, 0, "they exist\nso that tests can make certificates that are already expired"},
		{[]string{"identity", "issue", "-help"}, 0, "-not-after string"},
		{[]string{"identity", "show", "-h"}, 0, "usage: sframe identity show [-ca CA.pem] FILE.pem"},
		{[]string{"-h"}, 0, "sframe identity ca|issue|show"},
		{[]string{"identity"}, 2, "usage:\n  sframe identity ca"},
	} {
		out, stderr, code := runCLI(t, nil, tc.args...)
		if tc.code != 0 {
			out = stderr
		}
		if code != tc.code || !strings.Contains(out, tc.stdout) {
			t.Errorf("%q: exit %d (want %d), output lacks %q:\n%s", tc.args, code, tc.code, tc.stdout, out)
		}
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pki, other := filepath.Join(dir, "pki"), filepath.Join(dir, "other")
	caPEM := filepath.Join(pki, "ca.pem")

	out := mustRun(t, "identity", "ca", "-out", pki, "-name", "Test CA", "-days", "30")
	if !strings.Contains(out, "wrote "+caPEM) {
		t.Errorf("ca output: %q", out)
	}
	checkKeyMode(t, filepath.Join(pki, "ca.key"))
	if ca := readCert(t, caPEM); !ca.IsCA || ca.Subject.CommonName != "Test CA" {
		t.Errorf("CA certificate: IsCA %v, subject %s", ca.IsCA, ca.Subject)
	}
	mustRun(t, "identity", "ca", "-out", other)

	// A member: verifies against its CA, whichever order the flags come in
	// and whether -ca names the file or the directory.
	mustRun(t, "identity", "issue", "-ca", pki, "-name", "alice", "-out", pki)
	alice := filepath.Join(pki, "alice.pem")
	checkKeyMode(t, filepath.Join(pki, "alice.key"))
	sum := sha256.Sum256(readCert(t, alice).Raw)
	for _, args := range [][]string{
		{"identity", "show", "-ca", caPEM, alice},
		{"identity", "show", alice, "-ca", caPEM},
		{"identity", "show", "-ca", pki, alice},
	} {
		out := mustRun(t, args...)
		for _, want := range []string{
			"name:        alice\n",
			"fingerprint: " + hex.EncodeToString(sum[:]) + "\n",
			"subject:     CN=alice\n",
			"issuer:      CN=Test CA\n",
			"(valid now)",
			"key usage:   digitalSignature\n",
			"ext usage:   clientAuth\n",
			"verified:    yes",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%q: output lacks %q:\n%s", args, want, out)
			}
		}
	}
	// Without -ca: the fields, no verdict.
	if out := mustRun(t, "identity", "show", alice); strings.Contains(out, "verified") || !strings.Contains(out, "name:        alice") {
		t.Errorf("show without -ca:\n%s", out)
	}

	// A server certificate for the CS.
	mustRun(t, "identity", "issue", "-ca", pki, "-name", "cs", "-host", "localhost, 127.0.0.1", "-out", pki, "-days", "2")
	cs := readCert(t, filepath.Join(pki, "cs.pem"))
	if len(cs.DNSNames) != 1 || cs.DNSNames[0] != "localhost" || len(cs.IPAddresses) != 1 || !cs.IPAddresses[0].Equal([]byte{127, 0, 0, 1}) {
		t.Errorf("cs hosts: %v %v", cs.DNSNames, cs.IPAddresses)
	}
	if d := cs.NotAfter.Sub(cs.NotBefore).Hours(); d != 48 {
		t.Errorf("cs validity %v hours, want 48", d)
	}
	out = mustRun(t, "identity", "show", "-ca", caPEM, filepath.Join(pki, "cs.pem"))
	for _, want := range []string{"ext usage:   clientAuth, serverAuth\n", "hosts:       localhost, 127.0.0.1\n", "verified:    yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("cs: output lacks %q:\n%s", want, out)
		}
	}

	// The CA certificate itself: no member name.
	if out := mustRun(t, "identity", "show", caPEM); !strings.Contains(out, "name:        (none") || !strings.Contains(out, "ca:          yes") {
		t.Errorf("show ca.pem:\n%s", out)
	}

	// Certificates that must not verify against pki/ca.pem.
	mustRun(t, "identity", "issue", "-ca", other, "-name", "mallory", "-out", other)
	mustRun(t, "identity", "issue", "-ca", pki, "-name", "old", "-out", pki, "-not-after", "2020-01-02T00:00:00Z")
	mustRun(t, "identity", "issue", "-ca", pki, "-name", "early", "-out", pki,
		"-not-before", "2999-01-01T00:00:00Z", "-not-after", "2999-01-02T00:00:00Z")
	if old := readCert(t, filepath.Join(pki, "old.pem")); old.NotAfter.Format("2006-01-02") != "2020-01-02" ||
		old.NotAfter.Sub(old.NotBefore).Hours() != 365*24 {
		t.Errorf("old: valid %v to %v", old.NotBefore, old.NotAfter)
	}
	for _, tc := range []struct{ file, show, stderr string }{
		{filepath.Join(other, "mallory.pem"), "issuer:      CN=moqsframe CA", "not issued by a trusted CA"},
		{filepath.Join(pki, "old.pem"), "(expired)", "expired"},
		{filepath.Join(pki, "early.pem"), "(not yet valid)", "not yet valid"},
	} {
		out, stderr, code := runCLI(t, nil, "identity", "show", "-ca", caPEM, tc.file)
		if code != 1 || !strings.Contains(out, tc.show) || !strings.Contains(out, "verified:    no") ||
			!strings.HasPrefix(stderr, "sframe identity show: "+tc.file+" does not verify against "+caPEM+": identity: ") ||
			!strings.Contains(stderr, tc.stderr) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout:\n%s\nstderr: %q (want %q)", tc.file, code, out, stderr, tc.stderr)
		}
	}
}

// snapshot is every file of dir with its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		m[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestIdentityMistakes: every user mistake exits non-zero with one line
// that says what to do (plus the synopsis for a usage mistake, exit 2),
// and changes no file.
func TestIdentityMistakes(t *testing.T) {
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	mustRun(t, "identity", "ca", "-out", pki)
	mustRun(t, "identity", "issue", "-ca", pki, "-name", "alice", "-out", pki)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not pem"), 0o644)
	before := snapshot(t, dir)

	for _, tc := range []struct {
		name string
		args []string // $D is the test directory, $P the CA directory, $N a new directory
		code int
		err  string
	}{
		{"unknown subcommand", []string{"identity", "sign"}, 2, `unknown subcommand "sign": use ca, issue or show`},
		{"ca: no -out", []string{"identity", "ca"}, 2, "-out is required: the directory for ca.pem and ca.key, e.g. -out pki"},
		{"ca: unknown flag", []string{"identity", "ca", "-out", "$N", "-bogus"}, 2, "flag provided but not defined: -bogus"},
		{"ca: argument", []string{"identity", "ca", "-out", "$N", "extra"}, 2, `unexpected argument "extra"`},
		{"ca: zero days", []string{"identity", "ca", "-out", "$N", "-days", "0"}, 2, "-days must be positive"},
		{"ca: empty name", []string{"identity", "ca", "-out", "$N", "-name", " "}, 2, "-name must not be empty"},
		{"ca: existing key", []string{"identity", "ca", "-out", "$P"}, 1,
			"$P/ca.key exists, not overwriting it: $P already holds a CA; choose another -out, or remove $P/ca.key and $P/ca.pem"},
		{"issue: no -ca", []string{"identity", "issue", "-name", "bob", "-out", "$N"}, 2, "-ca is required"},
		{"issue: no -name", []string{"identity", "issue", "-ca", "$P", "-out", "$N"}, 2, "-name is required, e.g. -name alice"},
		{"issue: name with slash", []string{"identity", "issue", "-ca", "$P", "-name", "a/b", "-out", "$N"}, 2,
			`invalid -name "a/b": use 1-64 characters of [A-Za-z0-9._-]`},
		{"issue: name with dot", []string{"identity", "issue", "-ca", "$P", "-name", "..", "-out", "$N"}, 2, `invalid -name ".."`},
		{"issue: long name", []string{"identity", "issue", "-ca", "$P", "-name", strings.Repeat("x", 65), "-out", "$N"}, 2, "invalid -name"},
		{"issue: no -out", []string{"identity", "issue", "-ca", "$P", "-name", "bob"}, 2, "-out is required: the directory for bob.pem and bob.key"},
		{"issue: positional name", []string{"identity", "issue", "-ca", "$P", "-out", "$N", "bob"}, 2, "give the name with -name"},
		{"issue: missing CA dir", []string{"identity", "issue", "-ca", "$D/nope", "-name", "bob", "-out", "$N"}, 1,
			"no CA in $D/nope (open $D/nope/ca.pem: no such file or directory): make one with 'sframe identity ca -out $D/nope'"},
		{"issue: CA dir without CA", []string{"identity", "issue", "-ca", "$D", "-name", "bob", "-out", "$N"}, 1, "no CA in $D"},
		{"issue: -ca is ca.pem", []string{"identity", "issue", "-ca", "$P/ca.pem", "-name", "bob", "-out", "$N"}, 2,
			"-ca $P/ca.pem is a file: give the CA's directory (holding ca.pem and ca.key), e.g. -ca $P"},
		{"issue: existing key", []string{"identity", "issue", "-ca", "$P", "-name", "alice", "-out", "$P"}, 1,
			"$P/alice.key exists, not overwriting it: remove $P/alice.key and $P/alice.pem to reissue alice, or choose another -out"},
		{"issue: name of the CA", []string{"identity", "issue", "-ca", "$P", "-name", "ca", "-out", "$P"}, 1, "$P/ca.key exists"},
		{"issue: bad time", []string{"identity", "issue", "-ca", "$P", "-name", "bob", "-out", "$N", "-not-after", "2020-01-02"}, 2,
			`-not-after "2020-01-02": want RFC 3339, e.g. 2020-01-02T00:00:00Z`},
		{"issue: end before start", []string{"identity", "issue", "-ca", "$P", "-name", "bob", "-out", "$N",
			"-not-before", "2020-01-02T00:00:00Z", "-not-after", "2020-01-01T00:00:00Z"}, 2, "must be after -not-before"},
		{"issue: three of days and times", []string{"identity", "issue", "-ca", "$P", "-name", "bob", "-out", "$N", "-days", "3",
			"-not-before", "2020-01-01T00:00:00Z", "-not-after", "2020-01-02T00:00:00Z"}, 2, "at most two of -not-before, -not-after and -days"},
		{"issue: negative days", []string{"identity", "issue", "-ca", "$P", "-name", "bob", "-out", "$N", "-days", "-1"}, 2, "-days must be positive"},
		{"issue: empty host", []string{"identity", "issue", "-ca", "$P", "-name", "bob", "-out", "$N", "-host", "a,,b"}, 2, "has an empty entry"},
		{"show: no file", []string{"identity", "show"}, 2, "name a certificate file, e.g. sframe identity show pki/alice.pem"},
		{"show: two files", []string{"identity", "show", "$P/alice.pem", "$P/ca.pem"}, 2, "one certificate file at a time"},
		{"show: missing file", []string{"identity", "show", "$D/nope.pem"}, 1, "open $D/nope.pem: no such file or directory"},
		{"show: key file", []string{"identity", "show", "$P/alice.key"}, 1, "$P/alice.key is a private key: give the certificate (.pem) instead"},
		{"show: not PEM", []string{"identity", "show", "$D/junk.pem"}, 1, "$D/junk.pem holds no PEM certificate"},
		{"show: missing anchor", []string{"identity", "show", "-ca", "$D/nope.pem", "$P/alice.pem"}, 1,
			"give the CA's certificate with -ca, e.g. -ca pki/ca.pem"},
		{"show: anchor not PEM", []string{"identity", "show", "-ca", "$D/junk.pem", "$P/alice.pem"}, 1, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repl := strings.NewReplacer("$D", dir, "$P", pki, "$N", filepath.Join(dir, "new"))
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = repl.Replace(a)
			}
			_, stderr, code := runCLI(t, nil, args...)
			first, rest, _ := strings.Cut(stderr, "\n")
			sub := "sframe identity: "
			if len(args) > 1 && tc.name != "unknown subcommand" {
				sub = "sframe identity " + args[1] + ": "
			}
			if code != tc.code || !strings.HasPrefix(first, sub) || !strings.Contains(first, repl.Replace(tc.err)) {
				t.Errorf("%q: exit %d (want %d), stderr:\n%s\nwant a first line %q... containing %q", args, code, tc.code, stderr, sub, repl.Replace(tc.err))
			}
			switch {
			case code == 1 && rest != "":
				t.Errorf("more than one line:\n%s", stderr)
			case code == 2 && tc.name != "unknown subcommand" && !strings.HasPrefix(rest, "usage: sframe identity "+args[1]):
				t.Errorf("no synopsis after the error:\n%s", stderr)
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Errorf("files changed")
			}
		})
	}
}
