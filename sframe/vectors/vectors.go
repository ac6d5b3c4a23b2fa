// Package vectors reads files in the JSON test-vector format of RFC 9605
// (Appendix C) and checks an implementation against them, both ways: header
// encoding and decoding, AEAD encryption and decryption, and SFrame
// encryption and decryption with every intermediate value.
//
// It is a known-answer checker, not a sender: an SFrame case is checked
// whatever its CTR, and every field the format carries (sframe_key_label,
// sframe_salt_label, sframe_secret, sframe_key, sframe_salt, nonce, aad, ct)
// is compared; a case lacking one fails with ErrIncomplete, a wrong one with
// ErrMismatch naming the field. The files are untrusted input: any bytes
// give results or an error, never a panic.
package vectors

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"sort"

	"github.com/moqsframe/moqsframe/sframe"
)

// Result is the outcome of one test case.
type Result struct {
	Section string // JSON section, e.g. "header" or "sframe"
	Index   int    // position within the section
	Err     error  // nil when the case passed
}

func (r Result) String() string {
	if r.Err == nil {
		return fmt.Sprintf("%s[%d]: ok", r.Section, r.Index)
	}
	return fmt.Sprintf("%s[%d]: %v", r.Section, r.Index, r.Err)
}

// ErrUnrecognized means a section's cases match none of the RFC 9605 formats.
var ErrUnrecognized = errors.New("vectors: case matches no known format (header, AEAD or SFrame)")

// ErrIncomplete means a case lacks a field of its format.
var ErrIncomplete = errors.New("vectors: case lacks a field")

// ErrMismatch means a value computed from a case differs from the case's.
var ErrMismatch = errors.New("vectors: mismatch")

// hexBytes is a byte string encoded as hex in JSON.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type headerCase struct {
	KID     *uint64  `json:"kid"`
	CTR     *uint64  `json:"ctr"`
	Encoded hexBytes `json:"encoded"`
}

type aeadCase struct {
	Suite   sframe.CipherSuite `json:"cipher_suite"`
	Key     hexBytes           `json:"key"`
	EncKey  hexBytes           `json:"enc_key"`
	AuthKey hexBytes           `json:"auth_key"`
	Nonce   hexBytes           `json:"nonce"`
	AAD     hexBytes           `json:"aad"`
	PT      hexBytes           `json:"pt"`
	CT      hexBytes           `json:"ct"`
}

type sframeCase struct {
	Suite        sframe.CipherSuite `json:"cipher_suite"`
	KID          uint64             `json:"kid"`
	CTR          uint64             `json:"ctr"`
	BaseKey      hexBytes           `json:"base_key"`
	KeyLabel     hexBytes           `json:"sframe_key_label"`
	SaltLabel    hexBytes           `json:"sframe_salt_label"`
	SFrameSecret hexBytes           `json:"sframe_secret"`
	SFrameKey    hexBytes           `json:"sframe_key"`
	SFrameSalt   hexBytes           `json:"sframe_salt"`
	Metadata     hexBytes           `json:"metadata"`
	Nonce        hexBytes           `json:"nonce"`
	AAD          hexBytes           `json:"aad"`
	PT           hexBytes           `json:"pt"`
	CT           hexBytes           `json:"ct"`
}

// Fields every case of a format must carry: a vector missing one would
// leave that value unchecked.
var (
	headerFields = []string{"kid", "ctr", "encoded"}
	aeadFields   = []string{"cipher_suite", "key", "nonce", "aad", "pt", "ct"}
	sframeFields = []string{"cipher_suite", "kid", "ctr", "base_key", "sframe_key_label", "sframe_salt_label",
		"sframe_secret", "sframe_key", "sframe_salt", "metadata", "nonce", "aad", "pt", "ct"}
)

// CheckFile reads a test-vector file and checks every case in it.
func CheckFile(path string) ([]Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Check(b)
}

// Check checks every case of a test-vector document. Sections are taken in
// name order; a case's format is recognised by its fields, so the extra
// sections of the sframe-wg repository (e.g. "aes_256_ctr_hmac") work too.
func Check(doc []byte) ([]Result, error) {
	var sections map[string][]json.RawMessage
	if err := json.Unmarshal(doc, &sections); err != nil {
		return nil, fmt.Errorf("vectors: not an RFC 9605 test-vector document: %w", err)
	}
	names := make([]string, 0, len(sections))
	for name := range sections {
		names = append(names, name)
	}
	sort.Strings(names)
	var results []Result
	for _, name := range names {
		for i, raw := range sections[name] {
			results = append(results, Result{Section: name, Index: i, Err: checkCase(raw)})
		}
	}
	return results, nil
}

func checkCase(raw json.RawMessage) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	has := func(k string) bool { _, ok := fields[k]; return ok }
	var (
		c     any
		check func() error
		need  []string
	)
	switch {
	case has("encoded"):
		var h headerCase
		c, need, check = &h, headerFields, func() error { return checkHeader(h) }
	case has("base_key") || has("sframe_key"):
		var sc sframeCase
		c, need, check = &sc, sframeFields, func() error { return checkSFrame(sc) }
	case has("key") && has("nonce"):
		var ac aeadCase
		c, need, check = &ac, aeadFields, func() error { return checkAEAD(ac) }
	default:
		return ErrUnrecognized
	}
	for _, f := range need {
		if v, ok := fields[f]; !ok || string(v) == "null" {
			return fmt.Errorf("%w: no %q", ErrIncomplete, f)
		}
	}
	if err := json.Unmarshal(raw, c); err != nil {
		return err
	}
	return check()
}

func checkHeader(c headerCase) error {
	if got := sframe.AppendHeader(nil, *c.KID, *c.CTR); !bytes.Equal(got, c.Encoded) {
		return fmt.Errorf("%w: encoded: encode(kid=%d, ctr=%d) = %x, want %x", ErrMismatch, *c.KID, *c.CTR, got, []byte(c.Encoded))
	}
	h, n, err := sframe.ParseHeader(c.Encoded)
	if err != nil {
		return fmt.Errorf("decode %x: %w", []byte(c.Encoded), err)
	}
	if h.KID != *c.KID || h.CTR != *c.CTR || n != len(c.Encoded) {
		return fmt.Errorf("%w: encoded: decode %x = (kid=%d, ctr=%d, %d bytes), want (%d, %d, %d)",
			ErrMismatch, []byte(c.Encoded), h.KID, h.CTR, n, *c.KID, *c.CTR, len(c.Encoded))
	}
	return nil
}

func checkAEAD(c aeadCase) error {
	if !c.Suite.Supported() {
		return fmt.Errorf("%w: 0x%04x", sframe.ErrUnsupportedSuite, uint16(c.Suite))
	}
	if len(c.EncKey) > 0 && (!bytes.HasPrefix(c.Key, c.EncKey) || !bytes.HasSuffix(c.Key, c.AuthKey) ||
		len(c.EncKey)+len(c.AuthKey) != len(c.Key)) {
		return fmt.Errorf("%w: enc_key || auth_key is not key", ErrMismatch)
	}
	aead, err := sframe.NewAEAD(c.Suite, c.Key)
	if err != nil {
		return err
	}
	if len(c.Nonce) != aead.NonceSize() { // Seal would panic
		return fmt.Errorf("%w: nonce is %d bytes, %s takes %d", ErrMismatch, len(c.Nonce), c.Suite, aead.NonceSize())
	}
	if got := aead.Seal(nil, c.Nonce, c.PT, c.AAD); !bytes.Equal(got, c.CT) {
		return fmt.Errorf("%w: ct: the vector has %x, computed %x", ErrMismatch, []byte(c.CT), got)
	}
	pt, err := aead.Open(nil, c.Nonce, c.CT, c.AAD)
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	if !bytes.Equal(pt, c.PT) {
		return fmt.Errorf("%w: pt: the vector has %x, decrypted %x", ErrMismatch, []byte(c.PT), pt)
	}
	return nil
}

// checkSFrame checks an SFrame case whatever its CTR: the values RFC 9605
// §4.4.2 and §4.4.3 define are computed here from the case's inputs and
// compared one by one (so a failure names the first wrong field), then
// the package's derivation, encryption and decryption are compared against
// the case. Encryption goes through a Sender only for counters a Sender may
// use (below sframe.MaxCounter); above that, the ciphertext is built from
// the package's derivation and AEAD.
func checkSFrame(c sframeCase) error {
	if !c.Suite.Supported() {
		return fmt.Errorf("%w: 0x%04x", sframe.ErrUnsupportedSuite, uint16(c.Suite))
	}
	var hash func() hash.Hash
	switch c.Suite.HashSize() { // RFC 9605 §4.5: SHA-256 or SHA-512
	case sha256.Size:
		hash = sha256.New
	case sha512.Size:
		hash = sha512.New
	default:
		return fmt.Errorf("%w: hash of %s", sframe.ErrUnsupportedSuite, c.Suite)
	}
	keyLabel := label("SFrame 1.0 Secret key ", c.KID, c.Suite)
	saltLabel := label("SFrame 1.0 Secret salt ", c.KID, c.Suite)
	secret, err := hkdf.Extract(hash, c.BaseKey, nil)
	if err != nil {
		return err
	}
	hdr := sframe.AppendHeader(nil, c.KID, c.CTR)
	aad := append(append([]byte(nil), hdr...), c.Metadata...)
	if err := compare(
		field{"sframe_key_label", keyLabel, c.KeyLabel},
		field{"sframe_salt_label", saltLabel, c.SaltLabel},
		field{"sframe_secret", secret, c.SFrameSecret},
	); err != nil {
		return err
	}
	key, err := hkdf.Expand(hash, secret, string(keyLabel), c.Suite.KeySize())
	if err != nil {
		return err
	}
	salt, err := hkdf.Expand(hash, secret, string(saltLabel), c.Suite.NonceSize())
	if err != nil {
		return err
	}
	if err := compare(field{"sframe_key", key, c.SFrameKey}, field{"sframe_salt", salt, c.SFrameSalt}); err != nil {
		return err
	}
	// nonce = sframe_salt XOR CTR, CTR big-endian in AEAD.Nn bytes (§4.4.3).
	nonce := append([]byte(nil), salt...)
	for i, b := range binary.BigEndian.AppendUint64(nil, c.CTR) {
		nonce[len(nonce)-8+i] ^= b
	}
	if err := compare(field{"nonce", nonce, c.Nonce}, field{"aad", aad, c.AAD}); err != nil {
		return err
	}

	// The package against the case.
	pkey, psalt, err := sframe.DeriveKeySalt(c.Suite, c.KID, c.BaseKey)
	if err != nil {
		return err
	}
	if err := compare(field{"sframe_key (DeriveKeySalt)", pkey, c.SFrameKey}, field{"sframe_salt (DeriveKeySalt)", psalt, c.SFrameSalt}); err != nil {
		return err
	}
	aead, err := sframe.NewAEAD(c.Suite, pkey)
	if err != nil {
		return err
	}
	ct := aead.Seal(append([]byte(nil), hdr...), c.Nonce, c.PT, c.AAD)
	if err := compare(field{"ct (AEAD encrypt)", ct, c.CT}); err != nil {
		return err
	}
	if c.CTR < sframe.MaxCounter {
		s, err := sframe.NewSender(c.Suite, c.KID, c.BaseKey, sframe.WithCounter(c.CTR))
		if err != nil {
			return err
		}
		ct, err := s.Seal(nil, c.Metadata, c.PT)
		if err != nil {
			return fmt.Errorf("encrypt: %w", err)
		}
		if err := compare(field{"ct (Sender)", ct, c.CT}); err != nil {
			return err
		}
	}
	r := sframe.NewReceiver()
	if err := r.AddKey(c.Suite, c.KID, c.BaseKey); err != nil {
		return err
	}
	pt, err := r.Open(nil, c.Metadata, c.CT)
	if err != nil {
		return fmt.Errorf("decrypt (Receiver): %w", err)
	}
	return compare(field{"pt (Receiver)", pt, c.PT})
}

// label is prefix || KID (8 bytes) || cipher_suite (2 bytes), big-endian
// (RFC 9605 §4.4.2).
func label(prefix string, kid uint64, suite sframe.CipherSuite) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64([]byte(prefix), kid), uint16(suite))
}

type field struct {
	name             string
	computed, vector []byte
}

// compare returns an ErrMismatch naming the first field whose computed
// value differs from the case's.
func compare(fields ...field) error {
	for _, f := range fields {
		if !bytes.Equal(f.computed, f.vector) {
			return fmt.Errorf("%w: %s: the vector has %x, computed %x", ErrMismatch, f.name, f.vector, f.computed)
		}
	}
	return nil
}

// Summary counts passed and failed results.
func Summary(results []Result) (passed, failed int) {
	for _, r := range results {
		if r.Err == nil {
			passed++
		} else {
			failed++
		}
	}
	return passed, failed
}
