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
	"github.com/moqsframe/moqsframe/sframe/vectors"
)

const usage = `usage:
  sframe encrypt -suite N -key HEX|-key-file F -kid N [-ctr N] [-metadata S|-metadata-hex H]  < plaintext > sframe
  sframe decrypt -suite N -key HEX|-key-file F [-kid N] [-metadata S|-metadata-hex H]          < sframe > plaintext
  sframe inspect [-suite N]                                                                    < sframe
  sframe verify-vectors FILE...
  sframe bench [-json] [-quick]
  sframe identity ca|issue|show ...                                                           (sframe identity -h)

suites: 1..3 AES_128_CTR_HMAC_SHA256_{80,64,32}, 4 AES_128_GCM_SHA256_128, 5 AES_256_GCM_SHA512_128
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "encrypt":
		err = encrypt(args[1:], stdin, stdout)
	case "decrypt":
		err = decrypt(args[1:], stdin, stdout)
	case "inspect":
		err = inspect(args[1:], stdin, stdout)
	case "verify-vectors":
		return verifyVectors(args[1:], stdout, stderr)
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
	if err != nil {
		fmt.Fprintf(stderr, "sframe %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			fmt.Fprint(stderr, usage)
			return 2
		}
		return 1
	}
	return 0
}

var errUsage = errors.New("bad arguments")

// keyFlags are the flags encrypt and decrypt share.
type keyFlags struct {
	suite       uint
	keyHex      string
	keyFile     string
	metadata    string
	metadataHex string
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.UintVar(&k.suite, "suite", uint(sframe.AES128GCMSHA256_128), "cipher suite number")
	fs.StringVar(&k.keyHex, "key", "", "base key, hex")
	fs.StringVar(&k.keyFile, "key-file", "", "file holding the base key (raw bytes, or hex text)")
	fs.StringVar(&k.metadata, "metadata", "", "metadata authenticated with the frame, as text")
	fs.StringVar(&k.metadataHex, "metadata-hex", "", "metadata authenticated with the frame, hex")
}

func (k *keyFlags) resolve() (sframe.CipherSuite, []byte, []byte, error) {
	suite := sframe.CipherSuite(k.suite)
	if k.suite > 0xffff || !suite.Supported() {
		return 0, nil, nil, fmt.Errorf("%w: suite %d is not supported", errUsage, k.suite)
	}
	key, err := readKey(k.keyHex, k.keyFile)
	if err != nil {
		return 0, nil, nil, err
	}
	md := []byte(k.metadata)
	if k.metadataHex != "" {
		if k.metadata != "" {
			return 0, nil, nil, fmt.Errorf("%w: give -metadata or -metadata-hex, not both", errUsage)
		}
		if md, err = hex.DecodeString(k.metadataHex); err != nil {
			return 0, nil, nil, fmt.Errorf("%w: -metadata-hex: %v", errUsage, err)
		}
	}
	return suite, key, md, nil
}

func readKey(keyHex, keyFile string) ([]byte, error) {
	switch {
	case keyHex != "" && keyFile != "":
		return nil, fmt.Errorf("%w: give -key or -key-file, not both", errUsage)
	case keyHex != "":
		k, err := hex.DecodeString(keyHex)
		if err != nil {
			return nil, fmt.Errorf("%w: -key is not hex: %v", errUsage, err)
		}
		return checkKeyLen(k, "-key")
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, err
		}
		if k, err := hex.DecodeString(strings.TrimSpace(string(b))); err == nil && len(k) > 0 {
			return checkKeyLen(k, "-key-file "+keyFile)
		}
		return checkKeyLen(b, "-key-file "+keyFile)
	}
	return nil, fmt.Errorf("%w: a base key is required (-key or -key-file)", errUsage)
}

// minKeyLen is the shortest base key the CLI accepts. RFC 9605 feeds the
// base key to HKDF, so the library takes any length (the RFC's vectors use
// 16 bytes for every suite); a shorter one is almost surely a truncated hex
// string, and would be guessable, so it is refused rather than silently used.
const minKeyLen = 16

func checkKeyLen(k []byte, from string) ([]byte, error) {
	if len(k) < minKeyLen {
		return nil, fmt.Errorf("%w: %s: base key is %d bytes, want at least %d (%d hex digits)", errUsage, from, len(k), minKeyLen, 2*minKeyLen)
	}
	return k, nil
}

func encrypt(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("encrypt", flag.ContinueOnError)
	var kf keyFlags
	kf.register(fs)
	kid := fs.Uint64("kid", 0, "key ID")
	ctr := fs.Uint64("ctr", 0, "counter; never reuse a counter with the same key")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	suite, key, md, err := kf.resolve()
	if err != nil {
		return err
	}
	s, err := sframe.NewSender(suite, *kid, key, sframe.WithCounter(*ctr))
	if err != nil {
		return err
	}
	pt, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	ct, err := s.Seal(nil, md, pt)
	if err != nil {
		return err
	}
	_, err = stdout.Write(ct)
	return err
}

func decrypt(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("decrypt", flag.ContinueOnError)
	var kf keyFlags
	kf.register(fs)
	kid := fs.String("kid", "", "expected key ID (default: the header's)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	suite, key, md, err := kf.resolve()
	if err != nil {
		return err
	}
	ct, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	h, _, err := sframe.ParseHeader(ct)
	if err != nil {
		return err
	}
	if *kid != "" && *kid != fmt.Sprint(h.KID) {
		return fmt.Errorf("%w: header has KID %d, expected %s", sframe.ErrUnknownKID, h.KID, *kid)
	}
	r := sframe.NewReceiver()
	if err := r.AddKey(suite, h.KID, key); err != nil {
		return err
	}
	pt, err := r.Open(nil, md, ct)
	if err != nil {
		return err
	}
	_, err = stdout.Write(pt)
	return err
}

func inspect(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	suiteN := fs.Uint("suite", 0, "cipher suite, to split ciphertext and tag (optional)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	// Check the flag before reading stdin (which may be a terminal), and
	// before the uint16 conversion could wrap 65540 to suite 4.
	suite := sframe.CipherSuite(*suiteN)
	if *suiteN != 0 && (*suiteN > 0xffff || !suite.Supported()) {
		return fmt.Errorf("%w: suite %d is not supported", errUsage, *suiteN)
	}
	ct, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	h, n, err := sframe.ParseHeader(ct)
	if err != nil {
		return err
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
			return fmt.Errorf("%w: body %d bytes, %s tag is %d", sframe.ErrTruncated, body, suite, suite.TagSize())
		}
		fmt.Fprintf(&b, "suite:      %s\n", suite)
		fmt.Fprintf(&b, "ciphertext: %d bytes\n", body-suite.TagSize())
		fmt.Fprintf(&b, "tag:        %x (%d bytes)\n", ct[len(ct)-suite.TagSize():], suite.TagSize())
	}
	_, err = stdout.Write(b.Bytes())
	return err
}

func verifyVectors(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprint(stderr, "sframe verify-vectors: name at least one test-vector file\n")
		return 2
	}
	var passed, failed int
	for _, f := range files {
		results, err := vectors.CheckFile(f)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", f, err)
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
		return 1
	}
	return 0
}
