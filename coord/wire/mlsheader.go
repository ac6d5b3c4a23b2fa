package wire

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// MLS constants (RFC 9420 §6 and §17). The CS reads only the cleartext
// header of MLS messages: it never holds keys and cannot decrypt anything.
const (
	mlsVersion10 = 1

	WireFormatPublicMessage  uint16 = 1
	WireFormatPrivateMessage uint16 = 2
	WireFormatWelcome        uint16 = 3

	ContentTypeApplication uint8 = 1
	ContentTypeProposal    uint8 = 2
	ContentTypeCommit      uint8 = 3
)

// ErrMLSMismatch is returned (wrapped) when an MLS message inside a request
// is of the wrong kind or names a different group or epoch than the request.
var ErrMLSMismatch = errors.New("coord: MLS message does not match the request")

// MLSHeader is the cleartext header of an MLSMessage.
type MLSHeader struct {
	WireFormat  uint16
	GroupID     []byte // PublicMessage / PrivateMessage only
	Epoch       uint64 // PublicMessage / PrivateMessage only
	ContentType uint8  // PublicMessage / PrivateMessage only
}

// ParseMLSHeader reads the cleartext header of an MLSMessage (RFC 9420 §6):
//
//	struct { ProtocolVersion version = mls10; WireFormat wire_format; ... } MLSMessage;
//	PublicMessage:  FramedContent { opaque group_id<V>; uint64 epoch; Sender sender;
//	                opaque authenticated_data<V>; ContentType content_type; ... }
//	PrivateMessage: opaque group_id<V>; uint64 epoch; ContentType content_type; ...
//
// The rest of the message is not examined. Errors wrap ErrMalformed.
func ParseMLSHeader(data []byte) (MLSHeader, error) {
	s := cryptobyte.String(data)
	var h MLSHeader
	var err error
	if h.WireFormat, err = readVersioned(&s, "MLSMessage"); err != nil {
		return h, err
	}
	switch h.WireFormat {
	case WireFormatPublicMessage, WireFormatPrivateMessage:
	default:
		return h, nil
	}
	if h.GroupID, err = ReadVector(&s, "MLS group_id"); err != nil {
		return h, err
	}
	if !s.ReadUint64(&h.Epoch) {
		return h, malformed(ErrTruncated, "MLS epoch")
	}
	if h.WireFormat == WireFormatPublicMessage {
		var senderType uint8
		if !s.ReadUint8(&senderType) {
			return h, malformed(ErrTruncated, "MLS sender_type")
		}
		switch senderType {
		case 1, 2: // member(leaf_index), external(sender_index)
			var idx uint32
			if !s.ReadUint32(&idx) {
				return h, malformed(ErrTruncated, "MLS sender index")
			}
		case 3, 4: // new_member_proposal, new_member_commit
		default:
			return h, fmt.Errorf("%w: MLS sender_type %d is not defined", ErrMLSMismatch, senderType)
		}
		if _, err = ReadVector(&s, "MLS authenticated_data"); err != nil {
			return h, err
		}
	}
	if !s.ReadUint8(&h.ContentType) {
		return h, malformed(ErrTruncated, "MLS content_type")
	}
	return h, nil
}

// checkHandshake verifies that msg is a PublicMessage or PrivateMessage of
// the given content type for group (and, if epoch != nil, that epoch).
func checkHandshake(what string, msg []byte, contentType uint8, group []byte, epoch *uint64) error {
	h, err := ParseMLSHeader(msg)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if h.WireFormat != WireFormatPublicMessage && h.WireFormat != WireFormatPrivateMessage {
		return fmt.Errorf("%w: %s has wire_format %d, want 1 (PublicMessage) or 2 (PrivateMessage)", ErrMLSMismatch, what, h.WireFormat)
	}
	if h.ContentType != contentType {
		return fmt.Errorf("%w: %s has content_type %d, want %d", ErrMLSMismatch, what, h.ContentType, contentType)
	}
	if string(h.GroupID) != string(group) {
		return fmt.Errorf("%w: %s is for MLS group %q, request is for %q", ErrMLSMismatch, what, h.GroupID, group)
	}
	if epoch != nil && h.Epoch != *epoch {
		return fmt.Errorf("%w: %s was made in epoch %d but the request says epoch %d", ErrMLSMismatch, what, h.Epoch, *epoch)
	}
	return nil
}

// Validate checks that the MLS payloads of r are consistent with r: a leave
// carries a Remove proposal (content_type proposal) for r.GroupID; a join
// carries a KeyPackage of version mls10.
func (r *Request) Validate() error {
	switch r.Type {
	case RequestJoin:
		s := cryptobyte.String(r.Body)
		var version uint16
		if !s.ReadUint16(&version) {
			return malformed(ErrTruncated, "KeyPackage version")
		}
		if version != mlsVersion10 {
			return fmt.Errorf("%w: KeyPackage version %d, want 1 (mls10)", ErrMLSMismatch, version)
		}
		return nil
	case RequestLeave:
		return checkHandshake("leave proposal", r.Body, ContentTypeProposal, r.GroupID, nil)
	default:
		return malformed(ErrUnknownRequestType, "request_type %d", uint8(r.Type))
	}
}

// Validate checks that the Commit is a commit for c.GroupID made in c.Epoch
// and that the Welcome, if present, is an MLS Welcome.
func (c *CommitRequest) Validate() error {
	if err := checkHandshake("commit", c.Commit, ContentTypeCommit, c.GroupID, &c.Epoch); err != nil {
		return err
	}
	if c.Welcome != nil {
		h, err := ParseMLSHeader(c.Welcome)
		if err != nil {
			return fmt.Errorf("welcome: %w", err)
		}
		if h.WireFormat != WireFormatWelcome {
			return fmt.Errorf("%w: welcome has wire_format %d, want 3 (Welcome)", ErrMLSMismatch, h.WireFormat)
		}
	}
	return nil
}

// MLS credential types (RFC 9420 §17.5).
const (
	CredentialBasic uint16 = 1
	CredentialX509  uint16 = 2
)

// KeyPackageLeaf is what the CS and members read of a KeyPackage before
// handing it to MLS: the leaf's signature key and credential. Nothing here
// is verified; identity.Verifier checks the certificates against the
// signature key, and MLS checks the KeyPackage's signature.
type KeyPackageLeaf struct {
	CipherSuite    uint16
	SignatureKey   []byte
	CredentialType uint16
	Identity       []byte   // basic credential
	Certificates   [][]byte // X.509 credential: DER, leaf first
}

// Bounds on the chain a KeyPackage may carry.
const (
	maxCertificates   = 8
	maxCertificateLen = 16 << 10
)

// ParseKeyPackageLeaf reads the leaf of a KeyPackage (RFC 9420 §10, §7.2,
// §5.3):
//
//	KeyPackage { ProtocolVersion version; CipherSuite cipher_suite; HPKEPublicKey init_key;
//	             LeafNode { HPKEPublicKey encryption_key; SignaturePublicKey signature_key;
//	                        Credential { CredentialType credential_type;
//	                                     select: basic: opaque identity<V>;
//	                                             x509:  Certificate certificates<V> } ... } ... }
//	Certificate { opaque cert_data<V>; }
//
// The results alias data. Errors wrap ErrMalformed or ErrMLSMismatch.
func ParseKeyPackageLeaf(data []byte) (KeyPackageLeaf, error) {
	s := cryptobyte.String(data)
	var kp KeyPackageLeaf
	var err error
	if kp.CipherSuite, err = readVersioned(&s, "KeyPackage"); err != nil {
		return kp, err
	}
	for _, f := range []string{"KeyPackage init_key", "LeafNode encryption_key"} {
		if _, err = ReadVector(&s, f); err != nil {
			return kp, err
		}
	}
	if kp.SignatureKey, err = ReadVector(&s, "LeafNode signature_key"); err != nil {
		return kp, err
	}
	if !s.ReadUint16(&kp.CredentialType) {
		return kp, malformed(ErrTruncated, "credential_type")
	}
	switch kp.CredentialType {
	case CredentialBasic:
		kp.Identity, err = ReadVector(&s, "basic credential identity")
		return kp, err
	case CredentialX509:
		list, err := ReadVector(&s, "x509 certificates")
		if err != nil {
			return kp, err
		}
		l := cryptobyte.String(list)
		for !l.Empty() {
			if len(kp.Certificates) == maxCertificates {
				return kp, malformed(ErrFieldTooLarge, "more than %d certificates", maxCertificates)
			}
			c, err := readOpaqueV(&l, "cert_data", maxCertificateLen)
			if err != nil {
				return kp, err
			}
			kp.Certificates = append(kp.Certificates, c)
		}
		if len(kp.Certificates) == 0 {
			return kp, malformed(ErrEmptyField, "x509 certificates")
		}
		return kp, nil
	}
	return kp, fmt.Errorf("%w: credential_type %d, want 1 (basic) or 2 (x509)", ErrMLSMismatch, kp.CredentialType)
}

// ProposalSender returns the epoch and the sender's leaf index of a
// PublicMessage sent by a member (a leave request's Remove proposal), which
// a member needs before handing the message to MLS (MLS verifies the
// signature later):
//
//	MLSMessage { uint16 version = mls10; uint16 wire_format = 1;
//	             FramedContent { opaque group_id<V>; uint64 epoch; Sender { uint8 sender_type = 1; uint32 leaf_index } ... } }
//
// The rest of the message is not examined. Errors wrap ErrMalformed or
// ErrMLSMismatch.
func ProposalSender(msg []byte) (epoch uint64, leaf uint32, err error) {
	s := cryptobyte.String(msg)
	wf, err := readVersioned(&s, "MLSMessage")
	if err != nil {
		return 0, 0, err
	}
	if wf != WireFormatPublicMessage {
		return 0, 0, fmt.Errorf("%w: wire_format %d, want 1 (PublicMessage)", ErrMLSMismatch, wf)
	}
	if _, err := ReadVector(&s, "MLS group_id"); err != nil {
		return 0, 0, err
	}
	var senderType uint8
	if !s.ReadUint64(&epoch) || !s.ReadUint8(&senderType) {
		return 0, 0, malformed(ErrTruncated, "MLS epoch and sender")
	}
	if senderType != 1 {
		return 0, 0, fmt.Errorf("%w: MLS sender_type %d, want 1 (member)", ErrMLSMismatch, senderType)
	}
	if !s.ReadUint32(&leaf) {
		return 0, 0, malformed(ErrTruncated, "MLS sender leaf_index")
	}
	return epoch, leaf, nil
}

// readVersioned reads the ProtocolVersion (which must be mls10) and the
// uint16 after it that every MLS structure the CS reads starts with.
func readVersioned(s *cryptobyte.String, what string) (uint16, error) {
	var version, next uint16
	if !s.ReadUint16(&version) || !s.ReadUint16(&next) {
		return 0, malformed(ErrTruncated, "%s header", what)
	}
	if version != mlsVersion10 {
		return 0, fmt.Errorf("%w: %s version %d, want 1 (mls10)", ErrMLSMismatch, what, version)
	}
	return next, nil
}
