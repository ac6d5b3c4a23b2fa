// Command sframe encrypts, decrypts and inspects SFrame (RFC 9605)
// ciphertexts, checks implementations against JSON test vectors, benchmarks
// this one, and makes and inspects member identities (X.509 certificates).
//
//	sframe encrypt -suite 4 -key HEX -kid 7 -ctr 0 [-metadata STR] < plain > sframe
//	sframe decrypt -suite 4 -key HEX [-metadata STR] < sframe > plain
//	sframe inspect [-suite 4] < sframe
//	sframe verify-vectors FILE...
//	sframe bench [-json]
//	sframe identity ca -out DIR [-name "CA name"] [-days N]
//	sframe identity issue -ca DIR -name NAME -out DIR [-host H,H...] [-days N]
//	sframe identity show [-ca CA.pem] FILE.pem
package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moqsframe/moqsframe/sframe"
	"github.com/moqsframe/moqsframe/sframe/keyfile"
	"github.com/moqsframe/moqsframe/sframe/vectors"
)

const usage = `usage:
  sframe encrypt KEY -kid N [-ctr N] [METADATA]  < plaintext > sframe
  sframe decrypt KEY [-kid N] [METADATA]         < sframe > plaintext
  sframe inspect [-suite N]                      < sframe
  sframe verify-vectors FILE...
  sframe bench [-json] [-quick]
  sframe identity ca|issue|show ...

KEY is one of
  -key-file FILE                  key file {"suite": 4, "base_key": "<hex>"}, as the sidecar's
  -key HEX [-suite N]             base key in hex, suite N (default 4)
  -raw-key-file FILE [-suite N]   the file's bytes are the base key
METADATA, authenticated with the frame: -metadata TEXT, -metadata-hex HEX or -metadata-file FILE

suites: 1..3 AES_128_CTR_HMAC_SHA256_{80,64,32} (48-byte base key), 4 AES_128_GCM_SHA256_128 (16),
        5 AES_256_GCM_SHA512_128 (32)
Run 'sframe COMMAND -h' for a command's flags.
`

const encryptUsage = `usage: sframe encrypt KEY -kid N [-ctr N] [METADATA] < plaintext > sframe

Encrypts stdin as one SFrame ciphertext (RFC 9605 §4.4.3): header || AEAD
ciphertext || tag, under the key derived from the base key for KID N, with
counter -ctr. Never encrypt two frames with the same base key, KID and CTR.

KEY is -key-file FILE ({"suite": 4, "base_key": "<hex>"}), -key HEX or
-raw-key-file FILE (with -suite); METADATA is -metadata, -metadata-hex or
-metadata-file. The base key must be at least the suite's key length.

flags:
`

const decryptUsage = `usage: sframe decrypt KEY [-kid N] [METADATA] < sframe > plaintext

Decrypts one SFrame ciphertext from stdin with the key derived from the base
key for the header's KID (-kid N: refuse any other KID). The base key, suite
and metadata must be the sender's; on failure nothing is written to stdout.

flags:
`

const inspectUsage = `usage: sframe inspect [-suite N] < sframe

Prints the header (KID, CTR) of the SFrame ciphertext on stdin; with -suite
also its ciphertext and tag lengths. No key needed.

flags:
`

const verifyUsage = `usage: sframe verify-vectors FILE...

Checks this implementation against JSON test vectors in the format of
RFC 9605 Appendix C (header, AEAD and SFrame cases, whatever their CTR),
comparing every field: labels, sframe_secret, key, salt, nonce, AAD and
ciphertext, both ways. Prints each failure and "N passed, M failed"; exits 1
if any case failed.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var (
		fset *flag.FlagSet
		err  error
	)
	switch args[0] {
	case "encrypt":
		fset, err = encrypt(args[1:], stdin, stdout)
	case "decrypt":
		fset, err = decrypt(args[1:], stdin, stdout)
	case "inspect":
		fset, err = inspect(args[1:], stdin, stdout)
	case "verify-vectors":
		fset, err = verifyVectors(args[1:], stdout)
	case "bench":
		err = benchCmd(args[1:], stdout)
	case "identity":
		return identityCmd(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		// A mistyped command is a usage mistake, like a bad flag: exit 2
		// and show what the commands are.
		fmt.Fprintf(stderr, "sframe: unknown command %q\n", args[0])
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case isHelp(err):
		if fset != nil { // bench's flag set printed its own usage (to stderr)
			printFlagUsage(stdout, fset)
		}
		return 0
	}
	fmt.Fprintf(stderr, "sframe %s: %v\n", args[0], err)
	if errors.Is(err, errUsage) {
		if fset != nil {
			synopsis, _, _ := strings.Cut(subUsage[fset.Name()], "\n")
			fmt.Fprintf(stderr, "%s\n(sframe %s -h: details)\n", synopsis, args[0])
		} else {
			fmt.Fprint(stderr, usage)
		}
		return 2
	}
	return 1
}

// isHelp reports whether err is -h. bench wraps the flag package's error
// with %v, so its text is matched too.
func isHelp(err error) bool {
	return errors.Is(err, flag.ErrHelp) || strings.HasSuffix(err.Error(), flag.ErrHelp.Error())
}

var errUsage = errors.New("bad arguments")

// maxMetadata bounds -metadata-file. SFrame metadata is what the
// application authenticates with each frame (for MoQ, the object's name).
const maxMetadata = 1 << 20

// keyFlags are the flags encrypt and decrypt share.
type keyFlags struct {
	fset         *flag.FlagSet
	suite        uint
	keyHex       string
	keyFile      string
	rawKeyFile   string
	metadata     string
	metadataHex  string
	metadataFile string
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	k.fset = fs
	fs.UintVar(&k.suite, "suite", uint(sframe.AES128GCMSHA256_128), "cipher suite number, for -key and -raw-key-file (a key file names its own)")
	fs.StringVar(&k.keyFile, "key-file", "", `key file: {"suite": 4, "base_key": "<hex>"}, the sidecar's format`)
	fs.StringVar(&k.keyHex, "key", "", "base key, hex")
	fs.StringVar(&k.rawKeyFile, "raw-key-file", "", "file whose bytes are the base key")
	fs.StringVar(&k.metadata, "metadata", "", "metadata authenticated with the frame, as text")
	fs.StringVar(&k.metadataHex, "metadata-hex", "", "metadata authenticated with the frame, hex")
	fs.StringVar(&k.metadataFile, "metadata-file", "", "file whose bytes are the metadata authenticated with the frame (at most 1 MiB)")
}

// resolve returns the suite, base key and metadata the flags name. Flag
// mistakes wrap errUsage; a bad key wraps keyfile.ErrKeyLength,
// keyfile.ErrFormat or sframe.ErrUnsupportedSuite too.
func (k *keyFlags) resolve() (sframe.CipherSuite, []byte, []byte, error) {
	suite, key, err := k.key()
	if err != nil {
		return 0, nil, nil, err
	}
	md, err := k.meta()
	if err != nil {
		return 0, nil, nil, err
	}
	return suite, key, md, nil
}

func (k *keyFlags) key() (sframe.CipherSuite, []byte, error) {
	var given []string
	for _, f := range []struct{ name, v string }{{"-key-file", k.keyFile}, {"-key", k.keyHex}, {"-raw-key-file", k.rawKeyFile}} {
		if f.v != "" {
			given = append(given, f.name)
		}
	}
	switch len(given) {
	case 0:
		return 0, nil, fmt.Errorf("%w: a base key is required: -key-file FILE (JSON), -key HEX or -raw-key-file FILE", errUsage)
	case 1:
	default:
		return 0, nil, fmt.Errorf("%w: give one of %s, not both", errUsage, strings.Join(given, " and "))
	}
	suite := sframe.CipherSuite(k.suite)
	if k.suite > 0xffff || !suite.Supported() {
		return 0, nil, fmt.Errorf("%w: suite %d is not supported", errUsage, k.suite)
	}
	switch {
	case k.keyFile != "":
		fileSuite, key, err := keyfile.Load(k.keyFile)
		if err != nil {
			return 0, nil, err
		}
		if isSet(k.fset, "suite") && fileSuite != suite {
			return 0, nil, fmt.Errorf("%w: -suite %d, but %s is for suite %d: drop -suite (the key file names its suite)",
				errUsage, k.suite, k.keyFile, uint16(fileSuite))
		}
		return fileSuite, key, nil
	case k.keyHex != "":
		key, err := hex.DecodeString(k.keyHex)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: -key is not hex (for a key file, use -key-file)", errUsage)
		}
		if err := keyfile.CheckKey(suite, key); err != nil {
			return 0, nil, fmt.Errorf("%w: -key: %w", errUsage, err)
		}
		return suite, key, nil
	}
	key, err := os.ReadFile(k.rawKeyFile)
	if err != nil {
		return 0, nil, err
	}
	if err := keyfile.CheckKey(suite, key); err != nil {
		return 0, nil, fmt.Errorf("-raw-key-file %s: %w", k.rawKeyFile, err)
	}
	return suite, key, nil
}

func (k *keyFlags) meta() ([]byte, error) {
	var given []string
	for _, f := range []struct{ name, v string }{{"-metadata", k.metadata}, {"-metadata-hex", k.metadataHex}, {"-metadata-file", k.metadataFile}} {
		if f.v != "" {
			given = append(given, f.name)
		}
	}
	if len(given) > 1 {
		return nil, fmt.Errorf("%w: give one of %s, not both", errUsage, strings.Join(given, " and "))
	}
	switch {
	case k.metadataHex != "":
		md, err := hex.DecodeString(k.metadataHex)
		if err != nil {
			return nil, fmt.Errorf("%w: -metadata-hex: %v", errUsage, err)
		}
		return md, nil
	case k.metadataFile != "":
		f, err := os.Open(k.metadataFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		md, err := io.ReadAll(io.LimitReader(f, maxMetadata+1))
		if err != nil {
			return nil, err
		}
		if len(md) > maxMetadata {
			return nil, fmt.Errorf("-metadata-file %s: over %d bytes", k.metadataFile, maxMetadata)
		}
		return md, nil
	}
	return []byte(k.metadata), nil
}

func encrypt(args []string, stdin io.Reader, stdout io.Writer) (*flag.FlagSet, error) {
	fs := newFlagSet("encrypt")
	var kf keyFlags
	kf.register(fs)
	kid := fs.Uint64("kid", 0, "key ID")
	ctr := fs.Uint64("ctr", 0, "counter; never reuse a counter with the same base key and KID")
	if err := parseNoArgs(fs, args); err != nil {
		return fs, err
	}
	if *ctr >= sframe.MaxCounter {
		return fs, fmt.Errorf("%w: -ctr %d: a sender uses counters below %d; use a new KID", errUsage, *ctr, uint64(sframe.MaxCounter))
	}
	suite, key, md, err := kf.resolve()
	if err != nil {
		return fs, err
	}
	s, err := sframe.NewSender(suite, *kid, key, sframe.WithCounter(*ctr))
	if err != nil {
		return fs, err
	}
	pt, err := io.ReadAll(stdin)
	if err != nil {
		return fs, err
	}
	ct, err := s.Seal(nil, md, pt)
	if err != nil {
		return fs, err
	}
	_, err = stdout.Write(ct)
	return fs, err
}

func decrypt(args []string, stdin io.Reader, stdout io.Writer) (*flag.FlagSet, error) {
	fs := newFlagSet("decrypt")
	var kf keyFlags
	kf.register(fs)
	kid := fs.Uint64("kid", 0, "expected key ID (default: accept the header's)")
	if err := parseNoArgs(fs, args); err != nil {
		return fs, err
	}
	suite, key, md, err := kf.resolve()
	if err != nil {
		return fs, err
	}
	ct, err := io.ReadAll(stdin)
	if err != nil {
		return fs, err
	}
	h, _, err := sframe.ParseHeader(ct)
	if err != nil {
		return fs, fmt.Errorf("%w (is stdin one SFrame ciphertext? sframe inspect shows its header)", err)
	}
	if isSet(fs, "kid") && *kid != h.KID {
		return fs, fmt.Errorf("%w: the header's KID is %d, not -kid %d: check -kid, or that this frame is the one you meant", sframe.ErrUnknownKID, h.KID, *kid)
	}
	pt, err := open(suite, key, md, ct)
	if errors.Is(err, sframe.ErrAuthentication) {
		return fs, authHint(err, suite, key, md, ct, h)
	}
	if err != nil {
		return fs, err
	}
	_, err = stdout.Write(pt)
	return fs, err
}

func open(suite sframe.CipherSuite, key, md, ct []byte) ([]byte, error) {
	r := sframe.NewReceiver()
	h, _, err := sframe.ParseHeader(ct)
	if err != nil {
		return nil, err
	}
	if err := r.AddKey(suite, h.KID, key); err != nil {
		return nil, err
	}
	return r.Open(nil, md, ct)
}

// authHint says what to check after a frame failed to authenticate: the
// four inputs besides the ciphertext. If another suite opens the frame with
// this key, it says which.
func authHint(err error, suite sframe.CipherSuite, key, md, ct []byte, h sframe.Header) error {
	hint := ""
	for s := sframe.CipherSuite(1); s <= 0xff; s++ {
		if s == suite || !s.Supported() || len(key) < s.KeySize() {
			continue
		}
		if _, err := open(s, key, md, ct); err == nil {
			hint = fmt.Sprintf("; it opens as suite %d (%s): use that suite", uint16(s), s)
			break
		}
	}
	return fmt.Errorf("%w (KID %d, CTR %d, suite %d %s, %d bytes of metadata): check that the base key is the sender's for KID %d, "+
		"and that the suite and the metadata (-metadata, -metadata-hex or -metadata-file) are the sender's; else the frame was altered%s",
		err, h.KID, h.CTR, uint16(suite), suite, len(md), h.KID, hint)
}

// parseNoArgs parses flags and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q: input is read from stdin", errUsage, pos[0])
	}
	return nil
}

func inspect(args []string, stdin io.Reader, stdout io.Writer) (*flag.FlagSet, error) {
	fs := newFlagSet("inspect")
	suiteN := fs.Uint("suite", 0, "cipher suite, to split ciphertext and tag (optional)")
	if err := parseNoArgs(fs, args); err != nil {
		return fs, err
	}
	// Check the flag before reading stdin (which may be a terminal), and
	// before the uint16 conversion could wrap 65540 to suite 4.
	suite := sframe.CipherSuite(*suiteN)
	if *suiteN != 0 && (*suiteN > 0xffff || !suite.Supported()) {
		return fs, fmt.Errorf("%w: suite %d is not supported", errUsage, *suiteN)
	}
	ct, err := io.ReadAll(stdin)
	if err != nil {
		return fs, err
	}
	h, n, err := sframe.ParseHeader(ct)
	if err != nil {
		return fs, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "header:     %x (%d bytes)\n", ct[:n], n)
	fmt.Fprintf(&b, "config:     X=%d K=%d Y=%d C=%d\n", ct[0]>>7, ct[0]>>4&7, ct[0]>>3&1, ct[0]&7)
	fmt.Fprintf(&b, "kid:        %d (0x%x)\n", h.KID, h.KID)
	fmt.Fprintf(&b, "ctr:        %d (0x%x)\n", h.CTR, h.CTR)
	fmt.Fprintf(&b, "body:       %d bytes\n", len(ct)-n)
	if *suiteN != 0 {
		body := len(ct) - n
		if body < suite.TagSize() {
			return fs, fmt.Errorf("%w: body %d bytes, %s tag is %d", sframe.ErrTruncated, body, suite, suite.TagSize())
		}
		fmt.Fprintf(&b, "suite:      %s\n", suite)
		fmt.Fprintf(&b, "ciphertext: %d bytes\n", body-suite.TagSize())
		fmt.Fprintf(&b, "tag:        %x (%d bytes)\n", ct[len(ct)-suite.TagSize():], suite.TagSize())
	}
	_, err = stdout.Write(b.Bytes())
	return fs, err
}

func verifyVectors(args []string, stdout io.Writer) (*flag.FlagSet, error) {
	fs := newFlagSet("verify-vectors")
	files, err := parseFlags(fs, args)
	if err != nil {
		return fs, err
	}
	if len(files) == 0 {
		return fs, fmt.Errorf("%w: name at least one test-vector file", errUsage)
	}
	var passed, failed int
	for _, f := range files {
		results, err := vectors.CheckFile(f)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", f, err)
			failed++
			continue
		}
		for _, r := range results {
			if r.Err != nil {
				fmt.Fprintf(stdout, "FAIL %s: %v\n", f, r)
			}
		}
		p, fl := vectors.Summary(results)
		passed += p
		failed += fl
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return fs, fmt.Errorf("%d of %d test vectors failed", failed, passed+failed)
	}
	return fs, nil
}
