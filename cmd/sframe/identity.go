package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moqsframe/moqsframe/identity"
)

const identityUsage = `usage:
  sframe identity ca    -out DIR [-name "CA name"] [-days N]
  sframe identity issue -ca DIR -name NAME -out DIR [-host H,H...] [-days N] [-not-before T] [-not-after T]
  sframe identity show  [-ca CA.pem] FILE.pem

Member identities are X.509 certificates naming the member in the URI SAN
moqsframe:NAME, issued by the deployment's CA:

  sframe identity ca -out pki                                      # pki/ca.pem, pki/ca.key
  sframe identity issue -ca pki -name alice -out pki               # pki/alice.pem, pki/alice.key
  sframe identity issue -ca pki -name cs -host localhost,127.0.0.1 -out pki   # also a TLS server certificate
  sframe identity show -ca pki/ca.pem pki/alice.pem                # exits 1 if it does not verify

Run 'sframe identity SUBCOMMAND -h' for a subcommand's flags.
`

const identityCAUsage = `usage: sframe identity ca -out DIR [-name "CA name"] [-days N]

Makes a deployment's certificate authority: a self-signed ECDSA P-256 CA
certificate DIR/ca.pem (give it to every party as the trust anchor) and its
private key DIR/ca.key (mode 0600; keep it offline). An existing CA in DIR is
never overwritten.

flags:
`

const identityIssueUsage = `usage: sframe identity issue -ca DIR -name NAME -out DIR [-host H,H...] [-days N] [-not-before T] [-not-after T]

Issues an ECDSA P-256 certificate for NAME (URI SAN moqsframe:NAME; usable
for MLS signatures and TLS client authentication) signed by the CA in the -ca
directory, and writes DIR/NAME.pem and DIR/NAME.key (mode 0600). With -host
the certificate is a TLS server certificate too, for the coordination service
or a relay (e.g. -host localhost,127.0.0.1). An existing key is never
overwritten.

Validity: from now (less a minute, for clock skew) for -days. -not-before and
-not-after (RFC 3339, e.g. 2020-01-02T00:00:00Z) set it explicitly; they exist
so that tests can make certificates that are already expired or not yet
valid. A -not-after in the past without -not-before makes a certificate valid
for -days up to -not-after.

flags:
`

const identityShowUsage = `usage: sframe identity show [-ca CA.pem] FILE.pem

Prints a certificate's member name, fingerprint (SHA-256 of its DER),
subject, issuer, validity and key usages. With -ca (the trust anchor file,
e.g. pki/ca.pem, or the CA's directory) it also verifies the certificate as
every party does: chain to the anchor, validity period, key usages and member
name, and exits 1 with the reason if it does not verify.

flags:
`

// identityCmd runs `sframe identity SUBCOMMAND ...` and returns the exit
// code: 0, 1 for a failure, 2 for a usage mistake.
func identityCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, identityUsage)
		return 2
	}
	var (
		fset *flag.FlagSet
		err  error
	)
	switch args[0] {
	case "ca":
		fset, err = identityCA(args[1:], stdout)
	case "issue":
		fset, err = identityIssue(args[1:], stdout, stderr)
	case "show":
		fset, err = identityShow(args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, identityUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "sframe identity: unknown subcommand %q: use ca, issue or show\n", args[0])
		fmt.Fprint(stderr, identityUsage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		printFlagUsage(stdout, fset)
		return 0
	}
	fmt.Fprintf(stderr, "sframe identity %s: %v\n", args[0], err)
	if errors.Is(err, errUsage) {
		// The synopsis only: the full text would bury the error line.
		synopsis, _, _ := strings.Cut(subUsage[fset.Name()], "\n")
		fmt.Fprintf(stderr, "%s\n(sframe identity %s -h: details)\n", synopsis, args[0])
		return 2
	}
	return 1
}

// subUsage maps a subcommand's flag set to its usage header.
var subUsage = map[string]string{
	"encrypt":        encryptUsage,
	"decrypt":        decryptUsage,
	"inspect":        inspectUsage,
	"verify-vectors": verifyUsage,
	"identity ca":    identityCAUsage,
	"identity issue": identityIssueUsage,
	"identity show":  identityShowUsage,
}

func printFlagUsage(w io.Writer, fset *flag.FlagSet) {
	fmt.Fprint(w, subUsage[fset.Name()])
	fset.SetOutput(w)
	fset.PrintDefaults()
	fset.SetOutput(io.Discard)
}

// newFlagSet is a flag set that reports errors only through Parse's result.
func newFlagSet(name string) *flag.FlagSet {
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	return fset
}

// parseFlags parses args, allowing flags after positional arguments
// (`show FILE.pem -ca ca.pem`), and returns the positional arguments.
func parseFlags(fset *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fset.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fset.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func isSet(fset *flag.FlagSet, name string) bool {
	set := false
	fset.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// refuseExisting fails if DIR/BASE.key or DIR/BASE.pem exists, saying what
// to do (hint, given both paths).
func refuseExisting(dir, base string, hint func(key, cert string) string) error {
	key, cert := filepath.Join(dir, base+".key"), filepath.Join(dir, base+".pem")
	for _, p := range []string{key, cert} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists, not overwriting it: %s", p, hint(key, cert))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func identityCA(args []string, stdout io.Writer) (*flag.FlagSet, error) {
	fset := newFlagSet("identity ca")
	out := fset.String("out", "", "directory to write ca.pem and ca.key into (created if missing)")
	name := fset.String("name", "moqsframe CA", "the CA certificate's subject common name")
	days := fset.Int("days", 3650, "validity in days")
	pos, err := parseFlags(fset, args)
	switch {
	case err != nil:
		return fset, err
	case len(pos) > 0:
		return fset, fmt.Errorf("%w: unexpected argument %q: flags only", errUsage, pos[0])
	case *out == "":
		return fset, fmt.Errorf("%w: -out is required: the directory for ca.pem and ca.key, e.g. -out pki", errUsage)
	case strings.TrimSpace(*name) == "":
		return fset, fmt.Errorf("%w: -name must not be empty", errUsage)
	case *days <= 0:
		return fset, fmt.Errorf("%w: -days must be positive, got %d", errUsage, *days)
	}
	if err := refuseExisting(*out, "ca", func(key, cert string) string {
		return fmt.Sprintf("%s already holds a CA; choose another -out, or remove %s and %s to start over (and reissue every certificate)",
			*out, key, cert)
	}); err != nil {
		return fset, err
	}
	ca, err := identity.NewCA(*name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return fset, err
	}
	if err := ca.WriteCA(*out); err != nil {
		return fset, err
	}
	fmt.Fprintf(stdout, "wrote %s (trust anchor) and %s (private key, keep it secret)\n",
		filepath.Join(*out, "ca.pem"), filepath.Join(*out, "ca.key"))
	fmt.Fprintf(stdout, "CA %q, fingerprint %s, valid until %s\n",
		*name, fingerprint(ca.Certificate), ca.Certificate.NotAfter.UTC().Format(time.RFC3339))
	return fset, nil
}

func identityIssue(args []string, stdout, stderr io.Writer) (*flag.FlagSet, error) {
	fset := newFlagSet("identity issue")
	caDir := fset.String("ca", "", "directory holding the CA's ca.pem and ca.key (made by 'sframe identity ca')")
	name := fset.String("name", "", "member name: 1-64 characters of [A-Za-z0-9._-], not starting with '.' or '-'")
	out := fset.String("out", "", "directory to write NAME.pem and NAME.key into (created if missing)")
	hosts := fset.String("host", "", "comma-separated DNS names and IP addresses: makes a TLS server certificate too")
	days := fset.Int("days", 365, "validity in days")
	notBefore := fset.String("not-before", "", "start of validity, RFC 3339 (for tests; default now)")
	notAfter := fset.String("not-after", "", "end of validity, RFC 3339 (for tests: a past time makes an expired certificate)")
	pos, err := parseFlags(fset, args)
	switch {
	case err != nil:
		return fset, err
	case len(pos) > 0:
		return fset, fmt.Errorf("%w: unexpected argument %q: give the name with -name", errUsage, pos[0])
	case *caDir == "":
		return fset, fmt.Errorf("%w: -ca is required: the CA's directory, made by 'sframe identity ca -out DIR'", errUsage)
	case *name == "":
		return fset, fmt.Errorf("%w: -name is required, e.g. -name alice", errUsage)
	case !identity.ValidName(*name):
		return fset, fmt.Errorf("%w: invalid -name %q: use 1-%d characters of [A-Za-z0-9._-], not starting with '.' or '-'",
			errUsage, *name, identity.MaxNameLen)
	case *out == "":
		return fset, fmt.Errorf("%w: -out is required: the directory for %s.pem and %s.key, e.g. -out pki", errUsage, *name, *name)
	case *days <= 0:
		return fset, fmt.Errorf("%w: -days must be positive, got %d", errUsage, *days)
	case isSet(fset, "days") && *notBefore != "" && *notAfter != "":
		return fset, fmt.Errorf("%w: give at most two of -not-before, -not-after and -days", errUsage)
	}
	var opts identity.IssueOptions
	if *hosts != "" {
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h == "" {
				return fset, fmt.Errorf("%w: -host %q has an empty entry: give DNS names and IPs separated by commas", errUsage, *hosts)
			}
			opts.Hosts = append(opts.Hosts, h)
		}
	}
	if opts.NotBefore, err = parseTime("not-before", *notBefore); err != nil {
		return fset, err
	}
	if opts.NotAfter, err = parseTime("not-after", *notAfter); err != nil {
		return fset, err
	}
	validFor := time.Duration(*days) * 24 * time.Hour
	switch start := time.Now().Add(-time.Minute); {
	case opts.NotBefore.IsZero() && opts.NotAfter.IsZero():
		opts.NotBefore, opts.NotAfter = start, start.Add(validFor)
	case opts.NotAfter.IsZero():
		opts.NotAfter = opts.NotBefore.Add(validFor)
	case opts.NotBefore.IsZero():
		opts.NotBefore = start
		if !opts.NotAfter.After(start) {
			opts.NotBefore = opts.NotAfter.Add(-validFor)
		}
	}
	if !opts.NotAfter.After(opts.NotBefore) {
		return fset, fmt.Errorf("%w: -not-after %s must be after -not-before %s", errUsage,
			opts.NotAfter.UTC().Format(time.RFC3339), opts.NotBefore.UTC().Format(time.RFC3339))
	}

	if st, err := os.Stat(*caDir); err == nil && !st.IsDir() {
		return fset, fmt.Errorf("%w: -ca %s is a file: give the CA's directory (holding ca.pem and ca.key), e.g. -ca %s",
			errUsage, *caDir, filepath.Dir(*caDir))
	}
	ca, err := identity.LoadCA(*caDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fset, fmt.Errorf("no CA in %s (%v): make one with 'sframe identity ca -out %s', or point -ca at the CA's directory",
				*caDir, unwrapPath(err), *caDir)
		}
		return fset, err
	}
	if err := refuseExisting(*out, *name, func(key, cert string) string {
		return fmt.Sprintf("remove %s and %s to reissue %s, or choose another -out", key, cert, *name)
	}); err != nil {
		return fset, err
	}
	cert, key, err := ca.Issue(*name, opts)
	if err != nil {
		return fset, err
	}
	if err := identity.WriteIdentity(*out, *name, cert, key); err != nil {
		return fset, err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (private key, keep it secret)\n",
		filepath.Join(*out, *name+".pem"), filepath.Join(*out, *name+".key"))
	fmt.Fprintf(stdout, "%s, fingerprint %s, valid %s to %s\n", *name, fingerprint(cert),
		cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	if cert.NotAfter.After(ca.Certificate.NotAfter) {
		fmt.Fprintf(stderr, "sframe identity issue: note: the CA expires first (%s); the certificate stops verifying then\n",
			ca.Certificate.NotAfter.UTC().Format(time.RFC3339))
	}
	return fset, nil
}

func parseTime(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: -%s %q: want RFC 3339, e.g. 2020-01-02T00:00:00Z", errUsage, flagName, s)
	}
	return t, nil
}

// unwrapPath shortens "identity: open X: no such file or directory" to its
// *fs.PathError.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe
	}
	return err
}

func identityShow(args []string, stdout io.Writer) (*flag.FlagSet, error) {
	fset := newFlagSet("identity show")
	caFile := fset.String("ca", "", "trust anchor file (the CA's ca.pem, or its directory): also verify the certificate")
	pos, err := parseFlags(fset, args)
	switch {
	case err != nil:
		return fset, err
	case len(pos) == 0:
		return fset, fmt.Errorf("%w: name a certificate file, e.g. sframe identity show pki/alice.pem", errUsage)
	case len(pos) > 1:
		return fset, fmt.Errorf("%w: one certificate file at a time, got %d", errUsage, len(pos))
	}
	file := pos[0]
	certs, err := readCertificates(file)
	if err != nil {
		return fset, err
	}
	var v *identity.Verifier
	if *caFile != "" {
		anchor := *caFile
		if st, err := os.Stat(anchor); err == nil && st.IsDir() {
			anchor = filepath.Join(anchor, "ca.pem")
		}
		if v, err = identity.LoadVerifier(anchor); err != nil {
			return fset, fmt.Errorf("%v: give the CA's certificate with -ca, e.g. -ca pki/ca.pem", err)
		}
		*caFile = anchor
	}
	printCertificate(stdout, certs[0], time.Now())
	if len(certs) > 1 {
		fmt.Fprintf(stdout, "chain:       %d more certificates\n", len(certs)-1)
	}
	if v == nil {
		return fset, nil
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	if _, err := v.Verify(chain, nil); err != nil {
		fmt.Fprintf(stdout, "verified:    no (%s)\n", *caFile)
		return fset, fmt.Errorf("%s does not verify against %s: %w", file, *caFile, err)
	}
	fmt.Fprintf(stdout, "verified:    yes (%s)\n", *caFile)
	return fset, nil
}

// readCertificates reads the CERTIFICATE blocks of a PEM file, leaf first.
func readCertificates(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	sawKey := false
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			sawKey = sawKey || strings.HasSuffix(b.Type, "PRIVATE KEY")
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", file, identity.ErrMalformed, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if sawKey {
			return nil, fmt.Errorf("%s is a private key: give the certificate (.pem) instead", file)
		}
		return nil, fmt.Errorf("%s holds no PEM certificate: give a .pem file from 'sframe identity issue'", file)
	}
	return certs, nil
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func printCertificate(w io.Writer, c *x509.Certificate, now time.Time) {
	name, err := identity.Name(c)
	if err != nil {
		name = "(none: no URI SAN moqsframe:NAME; not a member certificate)"
	}
	fmt.Fprintf(w, "name:        %s\n", name)
	fmt.Fprintf(w, "fingerprint: %s\n", fingerprint(c))
	fmt.Fprintf(w, "subject:     %s\n", c.Subject)
	fmt.Fprintf(w, "issuer:      %s\n", c.Issuer)
	fmt.Fprintf(w, "serial:      %x\n", c.SerialNumber)
	state := "valid now"
	switch {
	case now.Before(c.NotBefore):
		state = "not yet valid"
	case now.After(c.NotAfter):
		state = "expired"
	}
	fmt.Fprintf(w, "validity:    %s to %s (%s)\n",
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), state)
	fmt.Fprintf(w, "key usage:   %s\n", orNone(keyUsages(c.KeyUsage)))
	fmt.Fprintf(w, "ext usage:   %s\n", orNone(extKeyUsages(c)))
	var hosts []string
	hosts = append(hosts, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	if len(hosts) > 0 {
		fmt.Fprintf(w, "hosts:       %s\n", strings.Join(hosts, ", "))
	}
	if c.IsCA {
		fmt.Fprintf(w, "ca:          yes\n")
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

func keyUsages(u x509.KeyUsage) []string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if u&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func extKeyUsages(c *x509.Certificate) []string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
		x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
		x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	}
	var out []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("ExtKeyUsage(%d)", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}
