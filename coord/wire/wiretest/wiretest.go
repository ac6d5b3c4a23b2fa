// Package wiretest builds the cleartext framing of MLS objects that the
// coordination service reads (RFC 9420 §6, §10), for tests: headers and
// KeyPackage prefixes, with filler where the CS reads no further. It does
// not import package wire, so wire's own tests can use it.
package wiretest

import (
	"encoding/binary"

	"golang.org/x/crypto/cryptobyte"
)

// RFC 9420 code points used below.
const (
	contentTypeCommit = 3
	credentialBasic   = 1
	credentialX509    = 2
)

// Handshake is an MLSMessage PublicMessage of group and epoch, sent by the
// member at leaf 2, with the given content type, followed by filler.
func Handshake(group string, epoch uint64, contentType uint8, filler string) []byte {
	b := []byte{0, 1, 0, 1} // mls10, public_message
	b = append(b, byte(len(group)))
	b = append(b, group...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = append(b, 1, 0, 0, 0, 2) // sender member, leaf 2
	b = append(b, 0)             // authenticated_data<V> empty
	b = append(b, contentType)
	return append(b, filler...)
}

// Commit is Handshake with content type commit.
func Commit(group string, epoch uint64, filler string) []byte {
	return Handshake(group, epoch, contentTypeCommit, filler)
}

// Welcome is an MLSMessage Welcome header followed by filler.
func Welcome(filler string) []byte { return append([]byte{0, 1, 0, 3}, filler...) }

// KeyPackage is a KeyPackage header (mls10, cipher suite 1) followed by
// filler.
func KeyPackage(filler string) []byte { return append([]byte{0, 1, 0, 1}, filler...) }

// KeyPackageX509 is the prefix of a KeyPackage (cipher suite 2) whose leaf
// has signature key sigKey and an X.509 credential of certs.
func KeyPackageX509(sigKey []byte, certs ...[]byte) []byte {
	var l cryptobyte.Builder
	for _, c := range certs {
		addVector(&l, c)
	}
	return keyPackage(sigKey, credentialX509, l.BytesOrPanic())
}

// KeyPackageBasic is the prefix of a KeyPackage (cipher suite 2) whose leaf
// has signature key sigKey and a basic credential naming name.
func KeyPackageBasic(sigKey []byte, name string) []byte {
	return keyPackage(sigKey, credentialBasic, []byte(name))
}

func keyPackage(sigKey []byte, credType uint16, credential []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint16(1)
	b.AddUint16(2)
	addVector(&b, []byte("init"))
	addVector(&b, []byte("enc"))
	addVector(&b, sigKey)
	b.AddUint16(credType)
	addVector(&b, credential)
	b.AddBytes([]byte("capabilities and the rest"))
	return b.BytesOrPanic()
}

// addVector writes an MLS opaque<V> (RFC 9420 §2.1.2) with the shortest
// length prefix.
func addVector(b *cryptobyte.Builder, data []byte) {
	switch n := len(data); {
	case n < 1<<6:
		b.AddUint8(uint8(n))
	case n < 1<<14:
		b.AddUint16(uint16(n) | 0x4000)
	default:
		b.AddUint32(uint32(n) | 0x80000000)
	}
	b.AddBytes(data)
}
