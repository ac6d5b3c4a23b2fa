package group

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// A minimal reader of the cleartext part of an MLS object (RFC 9420) that
// the member needs before handing it to MLS: the sender of a leave proposal
// (to know which members are leaving when choosing the committer). It reads
// untrusted bytes from the RequestTrack; MLS verifies the signature later.
// Fuzzed in parse_test.go. (A joiner's KeyPackage credential is read by
// coord.ParseKeyPackageLeaf and verified by mlsgroup.)

var errParse = errors.New("group: malformed MLS object")

// readV reads an MLS variable-length vector (RFC 9420 §2.1.2).
func readV(s *cryptobyte.String) ([]byte, bool) {
	var b0 uint8
	if !s.ReadUint8(&b0) {
		return nil, false
	}
	n := uint64(b0 & 0x3f)
	switch b0 >> 6 {
	case 0:
	case 1:
		var b uint8
		if !s.ReadUint8(&b) {
			return nil, false
		}
		n = n<<8 | uint64(b)
	case 2:
		var b [3]byte
		if !s.CopyBytes(b[:]) {
			return nil, false
		}
		n = n<<24 | uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2])
	default:
		return nil, false
	}
	var out []byte
	if !s.ReadBytes(&out, int(n)) {
		return nil, false
	}
	return out, true
}

// proposalSender returns the epoch and the sender leaf index of a
// PublicMessage sent by a member:
//
//	MLSMessage { uint16 version; uint16 wire_format = 1;
//	             FramedContent { opaque group_id<V>; uint64 epoch; Sender { uint8 sender_type = 1; uint32 leaf_index } ... } }
func proposalSender(msg []byte) (epoch uint64, leaf uint32, err error) {
	s := cryptobyte.String(msg)
	var version, wf uint16
	var st uint8
	if !s.ReadUint16(&version) || version != 1 || !s.ReadUint16(&wf) || wf != 1 {
		return 0, 0, errParse
	}
	if _, ok := readV(&s); !ok {
		return 0, 0, errParse
	}
	if !s.ReadUint64(&epoch) || !s.ReadUint8(&st) || st != 1 || !s.ReadUint32(&leaf) {
		return 0, 0, errParse
	}
	return epoch, leaf, nil
}
