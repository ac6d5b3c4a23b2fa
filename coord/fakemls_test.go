package coord

// Fake MLS messages for the server's tests: just the cleartext framing the
// CS reads (the same builders as the wire package's tests).

import (
	"encoding/binary"

	"golang.org/x/crypto/cryptobyte"

	"github.com/moqsframe/moqsframe/coord/wire"
)

// fakeHandshake builds an MLSMessage PublicMessage header with the given
// content type followed by opaque filler (the CS never reads further).
func fakeHandshake(group string, epoch uint64, contentType uint8, filler string) []byte {
	b := []byte{0, 1, 0, 1} // mls10, public_message
	b = append(b, byte(len(group)))
	b = append(b, group...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = append(b, 1, 0, 0, 0, 2) // sender member, leaf 2
	b = append(b, 0)             // authenticated_data<V> empty
	b = append(b, contentType)
	return append(b, filler...)
}

func fakeCommit(group string, epoch uint64, filler string) []byte {
	return fakeHandshake(group, epoch, wire.ContentTypeCommit, filler)
}

func fakeWelcome(filler string) []byte {
	return append([]byte{0, 1, 0, 3}, filler...)
}

func fakeKeyPackage(filler string) []byte {
	return append([]byte{0, 1, 0, 1}, filler...)
}

// keyPackageX509 builds the prefix of a KeyPackage with an X.509 credential.
func keyPackageX509(sigKey []byte, certs ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddUint16(1)
	b.AddUint16(2)
	wire.AddVector(&b, []byte("init"))
	wire.AddVector(&b, []byte("enc"))
	wire.AddVector(&b, sigKey)
	b.AddUint16(wire.CredentialX509)
	var l cryptobyte.Builder
	for _, c := range certs {
		wire.AddVector(&l, c)
	}
	wire.AddVector(&b, l.BytesOrPanic())
	b.AddBytes([]byte("capabilities and the rest"))
	return b.BytesOrPanic()
}
