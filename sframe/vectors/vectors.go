// Package vectors reads files in the JSON test-vector format of RFC 9605
// (Appendix C) and checks an implementation against them, both ways: header
// encoding and decoding, AEAD encryption and decryption, and SFrame
// encryption and decryption with every intermediate value.
package vectors

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	Suite      sframe.CipherSuite `json:"cipher_suite"`
	KID        uint64             `json:"kid"`
	CTR        uint64             `json:"ctr"`
	BaseKey    hexBytes           `json:"base_key"`
	KeyLabel   hexBytes           `json:"sframe_key_label"`
	SaltLabel  hexBytes           `json:"sframe_salt_label"`
	SFrameKey  hexBytes           `json:"sframe_key"`
	SFrameSalt hexBytes           `json:"sframe_salt"`
	Metadata   hexBytes           `json:"metadata"`
	Nonce      hexBytes           `json:"nonce"`
	AAD        hexBytes           `json:"aad"`
	PT         hexBytes           `json:"pt"`
	CT         hexBytes           `json:"ct"`
}

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
	switch {
	case has("encoded") && has("kid") && has("ctr"):
		var c headerCase
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		return checkHeader(c)
	case has("base_key"):
		var c sframeCase
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		return checkSFrame(c)
	case has("key") && has("nonce"):
		var c aeadCase
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		return checkAEAD(c)
	}
	return ErrUnrecognized
}

func checkHeader(c headerCase) error {
	if got := sframe.AppendHeader(nil, *c.KID, *c.CTR); !bytes.Equal(got, c.Encoded) {
		return fmt.Errorf("encode(kid=%d, ctr=%d) = %x, want %x", *c.KID, *c.CTR, got, []byte(c.Encoded))
	}
	h, n, err := sframe.ParseHeader(c.Encoded)
	if err != nil {
		return fmt.Errorf("decode %x: %w", []byte(c.Encoded), err)
	}
	if h.KID != *c.KID || h.CTR != *c.CTR || n != len(c.Encoded) {
		return fmt.Errorf("decode %x = (kid=%d, ctr=%d, %d bytes), want (%d, %d, %d)",
			[]byte(c.Encoded), h.KID, h.CTR, n, *c.KID, *c.CTR, len(c.Encoded))
	}
	return nil
}

func checkAEAD(c aeadCase) error {
	if !c.Suite.Supported() {
		return fmt.Errorf("%w: 0x%04x", sframe.ErrUnsupportedSuite, uint16(c.Suite))
	}
	if len(c.EncKey) > 0 && (!bytes.HasPrefix(c.Key, c.EncKey) || !bytes.HasSuffix(c.Key, c.AuthKey) ||
		len(c.EncKey)+len(c.AuthKey) != len(c.Key)) {
		return fmt.Errorf("enc_key || auth_key != key")
	}
	aead, err := sframe.NewAEAD(c.Suite, c.Key)
	if err != nil {
		return err
	}
	if got := aead.Seal(nil, c.Nonce, c.PT, c.AAD); !bytes.Equal(got, c.CT) {
		return fmt.Errorf("encrypt = %x, want %x", got, []byte(c.CT))
	}
	pt, err := aead.Open(nil, c.Nonce, c.CT, c.AAD)
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	if !bytes.Equal(pt, c.PT) {
		return fmt.Errorf("decrypt = %x, want %x", pt, []byte(c.PT))
	}
	return nil
}

func checkSFrame(c sframeCase) error {
	if !c.Suite.Supported() {
		return fmt.Errorf("%w: 0x%04x", sframe.ErrUnsupportedSuite, uint16(c.Suite))
	}
	key, salt, err := sframe.DeriveKeySalt(c.Suite, c.KID, c.BaseKey)
	if err != nil {
		return err
	}
	if !bytes.Equal(key, c.SFrameKey) || !bytes.Equal(salt, c.SFrameSalt) {
		return fmt.Errorf("derive: key %x salt %x, want %x %x", key, salt, []byte(c.SFrameKey), []byte(c.SFrameSalt))
	}
	if hdr := sframe.AppendHeader(nil, c.KID, c.CTR); len(c.AAD) > 0 && !bytes.Equal(c.AAD, append(hdr, c.Metadata...)) {
		return fmt.Errorf("aad %x is not header %x || metadata", []byte(c.AAD), hdr)
	}
	s, err := sframe.NewSender(c.Suite, c.KID, c.BaseKey, sframe.WithCounter(c.CTR))
	if err != nil {
		return err
	}
	ct, err := s.Seal(nil, c.Metadata, c.PT)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if !bytes.Equal(ct, c.CT) {
		return fmt.Errorf("encrypt = %x, want %x", ct, []byte(c.CT))
	}
	r := sframe.NewReceiver()
	if err := r.AddKey(c.Suite, c.KID, c.BaseKey); err != nil {
		return err
	}
	pt, err := r.Open(nil, c.Metadata, c.CT)
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	if !bytes.Equal(pt, c.PT) {
		return fmt.Errorf("decrypt = %x, want %x", pt, []byte(c.PT))
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
