package sframe

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// CipherSuite identifies an SFrame cipher suite (RFC 9605 §4.5, §8.1).
type CipherSuite uint16

// The cipher suites of RFC 9605.
const (
	AES128CTRHMACSHA256_80 CipherSuite = 0x0001
	AES128CTRHMACSHA256_64 CipherSuite = 0x0002
	AES128CTRHMACSHA256_32 CipherSuite = 0x0003
	AES128GCMSHA256_128    CipherSuite = 0x0004
	AES256GCMSHA512_128    CipherSuite = 0x0005
)

// AES-256-CTR with HMAC-SHA-512 suites. They are not registered by RFC 9605;
// they follow its §4.5.1 construction with Nka=32 and Nh=64, as in the
// sframe-wg test vectors, and exist for interoperability testing.
const (
	AES256CTRHMACSHA512_80 CipherSuite = 0x0006
	AES256CTRHMACSHA512_64 CipherSuite = 0x0007
	AES256CTRHMACSHA512_32 CipherSuite = 0x0008
)

// nonceSize is AEAD.Nn, the same for every suite.
const nonceSize = 12

type suiteParams struct {
	name string
	nh   int // hash output size
	nka  int // AES key size; 0 for AES-GCM, whose Nk is the AES key
	nk   int // AEAD key size
	nt   int // tag size
	gcm  bool
	hash func() hash.Hash
}

var suites = map[CipherSuite]*suiteParams{
	AES128CTRHMACSHA256_80: {"AES_128_CTR_HMAC_SHA256_80", 32, 16, 48, 10, false, sha256.New},
	AES128CTRHMACSHA256_64: {"AES_128_CTR_HMAC_SHA256_64", 32, 16, 48, 8, false, sha256.New},
	AES128CTRHMACSHA256_32: {"AES_128_CTR_HMAC_SHA256_32", 32, 16, 48, 4, false, sha256.New},
	AES128GCMSHA256_128:    {"AES_128_GCM_SHA256_128", 32, 0, 16, 16, true, sha256.New},
	AES256GCMSHA512_128:    {"AES_256_GCM_SHA512_128", 64, 0, 32, 16, true, sha512.New},
	AES256CTRHMACSHA512_80: {"AES_256_CTR_HMAC_SHA512_80", 64, 32, 96, 10, false, sha512.New},
	AES256CTRHMACSHA512_64: {"AES_256_CTR_HMAC_SHA512_64", 64, 32, 96, 8, false, sha512.New},
	AES256CTRHMACSHA512_32: {"AES_256_CTR_HMAC_SHA512_32", 64, 32, 96, 4, false, sha512.New},
}

func (s CipherSuite) params() (*suiteParams, error) {
	p, ok := suites[s]
	if !ok {
		return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedSuite, uint16(s))
	}
	return p, nil
}

// Supported reports whether the package implements the suite.
func (s CipherSuite) Supported() bool { _, ok := suites[s]; return ok }

// String returns the suite's registry name, such as "AES_128_GCM_SHA256_128".
func (s CipherSuite) String() string {
	if p, ok := suites[s]; ok {
		return p.name
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(s))
}

// KeySize returns AEAD.Nk, the size of the derived sframe_key and of the
// base_key an MLS exporter produces for this suite (RFC 9605 §5.2).
func (s CipherSuite) KeySize() int { return s.get(func(p *suiteParams) int { return p.nk }) }

// NonceSize returns AEAD.Nn (12 for every suite).
func (s CipherSuite) NonceSize() int { return s.get(func(*suiteParams) int { return nonceSize }) }

// TagSize returns AEAD.Nt, the bytes the AEAD adds to the plaintext.
func (s CipherSuite) TagSize() int { return s.get(func(p *suiteParams) int { return p.nt }) }

// HashSize returns Hash.Nh.
func (s CipherSuite) HashSize() int { return s.get(func(p *suiteParams) int { return p.nh }) }

func (s CipherSuite) get(f func(*suiteParams) int) int {
	if p, ok := suites[s]; ok {
		return f(p)
	}
	return 0
}

// Overhead returns the bytes SFrame adds to a plaintext for the given KID and
// CTR: the header plus the tag.
func (s CipherSuite) Overhead(kid, ctr uint64) int { return HeaderLen(kid, ctr) + s.TagSize() }

// MaxBlocks is the usage limit of one key, in 16-byte AES blocks processed
// (each encryption costs its plaintext blocks plus one). It keeps the
// distinguishing advantage against AES-based suites below 2^-57, the target
// draft-irtf-cfrg-aead-limits and QUIC (RFC 9001 §6.6) use: with σ total
// blocks the bound is about σ²/2^128, so σ ≤ 2^35; we stop at 2^34 for margin.
// A [Sender] refuses to encrypt past it.
const MaxBlocks = 1 << 34

// maxPlaintext bounds one encryption. AES-CTR+HMAC and GCM both count blocks
// with a 32-bit counter: 2^32-2 blocks for GCM. Media objects are far below.
const maxPlaintext = (1<<32 - 2) * 16
