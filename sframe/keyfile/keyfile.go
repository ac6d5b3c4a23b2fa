// Package keyfile reads and writes SFrame static key files, the one format
// every command of this module takes with -key-file:
//
//	{"suite": 4, "base_key": "000102030405060708090a0b0c0d0e0f"}
//
// suite is the RFC 9605 cipher suite number (§8.1) and base_key the hex
// base key (§4.4.1), at least as long as the suite's AEAD key (AEAD.Nk, the
// length an MLS exporter produces for it, §5.2).
//
// The adversary is whoever can write the file or feed it to the command
// by mistake: any bytes give a typed error naming the problem, never a
// panic, and the key itself never appears in an error.
package keyfile

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/moqsframe/moqsframe/sframe"
)

// Errors. A key file that fails to parse is ErrFormat; a key too short for
// its suite is ErrKeyLength (from Parse, Load and CheckKey alike); an
// unsupported suite is sframe.ErrUnsupportedSuite.
var (
	ErrFormat    = errors.New(`keyfile: not a key file {"suite": N, "base_key": "<hex>"}`)
	ErrKeyLength = errors.New("keyfile: base key too short for its cipher suite")
)

// maxSize bounds what Load reads: a key file is a few hundred bytes.
const maxSize = 64 << 10

// File is the JSON form of a key file.
type File struct {
	Suite   sframe.CipherSuite `json:"suite"`
	BaseKey string             `json:"base_key"` // hex
}

// Load reads and parses the key file at path (see Parse); errors name the
// path.
func Load(path string) (sframe.CipherSuite, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return 0, nil, err
	}
	if len(b) > maxSize {
		return 0, nil, fmt.Errorf("%w: %s is over %d bytes", ErrFormat, path, maxSize)
	}
	suite, key, err := Parse(b)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", path, err)
	}
	return suite, key, nil
}

// Parse parses a key file: one JSON object with exactly the fields suite
// (a supported suite number) and base_key (hex, at least suite.KeySize()
// bytes). It returns the suite and the decoded base key, or an error
// wrapping ErrFormat, sframe.ErrUnsupportedSuite or ErrKeyLength.
func Parse(b []byte) (sframe.CipherSuite, []byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt field is a mistake, not an extension
	var raw struct {
		Suite   *uint64 `json:"suite"`
		BaseKey *string `json:"base_key"`
	}
	if err := dec.Decode(&raw); err != nil {
		// json's messages quote field names and types, never values.
		return 0, nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if dec.More() {
		return 0, nil, fmt.Errorf("%w: data after the JSON object", ErrFormat)
	}
	switch {
	case raw.Suite == nil:
		return 0, nil, fmt.Errorf("%w: no \"suite\"", ErrFormat)
	case raw.BaseKey == nil:
		return 0, nil, fmt.Errorf("%w: no \"base_key\"", ErrFormat)
	}
	if *raw.Suite > 0xffff || !sframe.CipherSuite(*raw.Suite).Supported() {
		return 0, nil, fmt.Errorf("%w: suite %d", sframe.ErrUnsupportedSuite, *raw.Suite)
	}
	suite := sframe.CipherSuite(*raw.Suite)
	key, err := hex.DecodeString(*raw.BaseKey)
	if err != nil {
		// Not err itself: hex's message quotes the offending byte.
		return 0, nil, fmt.Errorf("%w: base_key is not hex", ErrFormat)
	}
	if err := CheckKey(suite, key); err != nil {
		return 0, nil, err
	}
	return suite, key, nil
}

// CheckKey returns an error wrapping ErrKeyLength if key is shorter than
// suite's AEAD key (suite.KeySize() bytes: 16 for suite 4, 32 for 5, 48
// for 1-3), and one wrapping sframe.ErrUnsupportedSuite for a suite this
// module does not implement.
func CheckKey(suite sframe.CipherSuite, key []byte) error {
	if !suite.Supported() {
		return fmt.Errorf("%w: suite %d", sframe.ErrUnsupportedSuite, uint16(suite))
	}
	if n := suite.KeySize(); len(key) < n {
		return fmt.Errorf("%w: base_key is %d bytes; %s (suite %d) needs at least %d (%d hex digits)",
			ErrKeyLength, len(key), suite, uint16(suite), n, 2*n)
	}
	return nil
}

// Marshal returns the key file for suite and key, newline-terminated.
func Marshal(suite sframe.CipherSuite, key []byte) []byte {
	return fmt.Appendf(nil, "{\"suite\": %d, \"base_key\": \"%x\"}\n", uint16(suite), key)
}
