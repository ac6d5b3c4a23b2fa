package sframe

import (
	"crypto/hkdf"
	"encoding/binary"
	"fmt"
)

// DeriveKeySalt derives sframe_key and sframe_salt for kid from base_key, as
// RFC 9605 §4.4.2 specifies. Most callers want [NewSender] or
// [Receiver.AddKey], which call it; it is exported for key-management code and
// test vectors.
func DeriveKeySalt(suite CipherSuite, kid uint64, baseKey []byte) (key, salt []byte, err error) {
	p, err := suite.params()
	if err != nil {
		return nil, nil, err
	}
	if len(baseKey) == 0 {
		return nil, nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	secret, err := hkdf.Extract(p.hash, baseKey, nil)
	if err != nil {
		return nil, nil, err
	}
	key, err = hkdf.Expand(p.hash, secret, string(derivationLabel("SFrame 1.0 Secret key ", kid, suite)), p.nk)
	if err != nil {
		return nil, nil, err
	}
	salt, err = hkdf.Expand(p.hash, secret, string(derivationLabel("SFrame 1.0 Secret salt ", kid, suite)), nonceSize)
	if err != nil {
		return nil, nil, err
	}
	return key, salt, nil
}

// derivationLabel returns prefix || KID as 8 bytes || suite as 2 bytes, all
// big-endian (RFC 9605 §4.4.2).
func derivationLabel(prefix string, kid uint64, suite CipherSuite) []byte {
	b := make([]byte, 0, len(prefix)+10)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, kid)
	return binary.BigEndian.AppendUint16(b, uint16(suite))
}
