// Package wire holds the byte formats of the coordination service (CS) of
// draft-jennings-moq-e2ee-mls: the structs posted to the CS and carried on
// its MoQ tracks (Request, CommitRequest, EpochAck), and the readers of the
// cleartext framing of MLS messages that the CS and the members need before
// handing a message to MLS (ParseMLSHeader, ParseKeyPackageLeaf,
// ProposalSender). It has no I/O and imports nothing of the project.
//
// Wire structs use the TLS presentation language with the MLS extensions of
// RFC 9420 §2.1 (variable-length vectors <V>, optional<T>). Encoding and
// decoding use golang.org/x/crypto/cryptobyte. Decoders are strict: they
// reject trailing bytes, truncated or non-minimal length prefixes, unknown
// enum values and empty required fields. See docs/coordination-service.md.
package wire

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Decoding errors. Every decoding error wraps ErrMalformed and exactly one of
// the more specific sentinels below, so callers can test with errors.Is.
var (
	// ErrMalformed is wrapped by every decoding error.
	ErrMalformed = errors.New("coord: malformed message")
	// ErrTruncated: the input ended inside a field.
	ErrTruncated = errors.New("input truncated")
	// ErrTrailingData: bytes follow the end of the struct.
	ErrTrailingData = errors.New("trailing bytes after struct")
	// ErrBadLength: a variable-length prefix is invalid (reserved 0b11 prefix
	// or non-minimal encoding, RFC 9420 §2.1.2).
	ErrBadLength = errors.New("invalid variable-length prefix")
	// ErrUnknownRequestType: request_type is not join(1) or leave(2).
	ErrUnknownRequestType = errors.New("unknown request_type")
	// ErrBadOptional: an optional<T> presence octet is neither 0 nor 1.
	ErrBadOptional = errors.New("optional presence octet is not 0 or 1")
	// ErrEmptyField: a required vector is empty.
	ErrEmptyField = errors.New("required field is empty")
	// ErrFieldTooLarge: a vector exceeds MaxFieldLen.
	ErrFieldTooLarge = errors.New("field too large")
)

// MaxFieldLen bounds every vector in the wire structs (and the 30-bit MLS
// varint bounds them anyway). It is far above any realistic KeyPackage,
// Commit or Welcome; the HTTP layer applies its own, smaller body limit.
const MaxFieldLen = 1 << 24

// ValidGroupName reports whether name can be a group: 1 to 255 bytes of
// URL-unreserved characters A-Z a-z 0-9 - . _ ~ (so it is the same in the
// URL path, the wire struct, the MLS group_id and the MoQ namespace).
func ValidGroupName(name string) bool {
	if len(name) == 0 || len(name) > MaxGroupIDLen || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// MaxGroupIDLen bounds group_id. Group IDs appear in URLs and MoQ track
// namespaces, so they are short printable names (see ValidGroupName).
const MaxGroupIDLen = 255

func malformed(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrMalformed, kind, fmt.Sprintf(format, args...))
}

// RequestType is the request_type enum of a Request (uint8 on the wire).
type RequestType uint8

const (
	// RequestJoin carries a KeyPackage.
	RequestJoin RequestType = 1
	// RequestLeave carries an MLS message with a Remove proposal for the sender itself.
	RequestLeave RequestType = 2
)

func (t RequestType) String() string {
	switch t {
	case RequestJoin:
		return "join"
	case RequestLeave:
		return "leave"
	default:
		return fmt.Sprintf("RequestType(%d)", uint8(t))
	}
}

// Request is the body of POST /v1/groups/{group}/requests and the payload of
// RequestTrack objects:
//
//	enum { join(1), leave(2), (255) } RequestType;
//	struct {
//	    opaque group_id<V>;
//	    RequestType request_type;
//	    select (Request.request_type) {
//	        case join:  opaque key_package<V>;  // an MLS KeyPackage
//	        case leave: opaque remove<V>;       // MLSMessage: Remove proposal for self
//	    };
//	} Request;
type Request struct {
	GroupID []byte
	Type    RequestType
	// Body is the KeyPackage (join) or the MLSMessage carrying the
	// sender's Remove proposal for itself (leave).
	Body []byte
}

// CommitRequest is the body of POST /v1/groups/{group}/commits:
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;                 // epoch in which the Commit was made
//	    opaque commit<V>;             // MLSMessage (PublicMessage or PrivateMessage) with a Commit
//	    optional<opaque welcome<V>>;  // MLSMessage with a Welcome
//	} CommitRequest;
type CommitRequest struct {
	GroupID []byte
	Epoch   uint64
	Commit  []byte
	Welcome []byte // nil when absent; never empty when present
}

// Marshal encodes r. It fails on values that the decoder would reject.
func (r *Request) Marshal() ([]byte, error) {
	if r.Type != RequestJoin && r.Type != RequestLeave {
		return nil, fmt.Errorf("coord: cannot encode %v: use RequestJoin or RequestLeave", r.Type)
	}
	if err := checkField("group_id", r.GroupID, MaxGroupIDLen); err != nil {
		return nil, err
	}
	if err := checkField("request body", r.Body, MaxFieldLen); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	AddVector(&b, r.GroupID)
	b.AddUint8(uint8(r.Type))
	AddVector(&b, r.Body)
	return b.Bytes()
}

// UnmarshalRequest decodes a Request strictly.
func UnmarshalRequest(data []byte) (*Request, error) {
	s := cryptobyte.String(data)
	var r Request
	var err error
	if r.GroupID, err = readOpaqueV(&s, "group_id", MaxGroupIDLen); err != nil {
		return nil, err
	}
	var t uint8
	if !s.ReadUint8(&t) {
		return nil, malformed(ErrTruncated, "request_type")
	}
	r.Type = RequestType(t)
	if r.Type != RequestJoin && r.Type != RequestLeave {
		return nil, malformed(ErrUnknownRequestType, "request_type %d (want 1=join or 2=leave)", t)
	}
	if r.Body, err = readOpaqueV(&s, r.Type.String()+" body", MaxFieldLen); err != nil {
		return nil, err
	}
	if !s.Empty() {
		return nil, malformed(ErrTrailingData, "%d bytes after Request", len(s))
	}
	return &r, nil
}

// Marshal encodes c. It fails on values that the decoder would reject.
func (c *CommitRequest) Marshal() ([]byte, error) {
	if err := checkField("group_id", c.GroupID, MaxGroupIDLen); err != nil {
		return nil, err
	}
	if err := checkField("commit", c.Commit, MaxFieldLen); err != nil {
		return nil, err
	}
	if c.Welcome != nil {
		if err := checkField("welcome", c.Welcome, MaxFieldLen); err != nil {
			return nil, err
		}
	}
	var b cryptobyte.Builder
	AddVector(&b, c.GroupID)
	b.AddUint64(c.Epoch)
	AddVector(&b, c.Commit)
	if c.Welcome == nil {
		b.AddUint8(0)
	} else {
		b.AddUint8(1)
		AddVector(&b, c.Welcome)
	}
	return b.Bytes()
}

// UnmarshalCommitRequest decodes a CommitRequest strictly.
func UnmarshalCommitRequest(data []byte) (*CommitRequest, error) {
	s := cryptobyte.String(data)
	var c CommitRequest
	var err error
	if c.GroupID, err = readOpaqueV(&s, "group_id", MaxGroupIDLen); err != nil {
		return nil, err
	}
	if !s.ReadUint64(&c.Epoch) {
		return nil, malformed(ErrTruncated, "epoch")
	}
	if c.Commit, err = readOpaqueV(&s, "commit", MaxFieldLen); err != nil {
		return nil, err
	}
	var present uint8
	if !s.ReadUint8(&present) {
		return nil, malformed(ErrTruncated, "welcome presence octet")
	}
	switch present {
	case 0:
	case 1:
		if c.Welcome, err = readOpaqueV(&s, "welcome", MaxFieldLen); err != nil {
			return nil, err
		}
	default:
		return nil, malformed(ErrBadOptional, "welcome presence octet %d", present)
	}
	if !s.Empty() {
		return nil, malformed(ErrTrailingData, "%d bytes after CommitRequest", len(s))
	}
	return &c, nil
}

func checkField(name string, v []byte, max int) error {
	if len(v) == 0 {
		return fmt.Errorf("coord: %s is empty", name)
	}
	if len(v) > max {
		return fmt.Errorf("coord: %s is %d bytes, limit %d", name, len(v), max)
	}
	return nil
}

// readVarint reads an MLS variable-length integer (RFC 9420 §2.1.2): the two
// top bits of the first octet give the length (1, 2 or 4 octets); 0b11 is
// reserved, and the minimum encoding is required.
func readVarint(s *cryptobyte.String, field string) (uint64, error) {
	var first uint8
	if !s.ReadUint8(&first) {
		return 0, malformed(ErrTruncated, "%s length", field)
	}
	switch first >> 6 {
	case 0:
		return uint64(first & 0x3f), nil
	case 1:
		var next uint8
		if !s.ReadUint8(&next) {
			return 0, malformed(ErrTruncated, "%s length", field)
		}
		v := uint64(first&0x3f)<<8 | uint64(next)
		if v < 1<<6 {
			return 0, malformed(ErrBadLength, "%s length %d is not minimally encoded", field, v)
		}
		return v, nil
	case 2:
		var rest []byte
		if !s.ReadBytes(&rest, 3) {
			return 0, malformed(ErrTruncated, "%s length", field)
		}
		v := uint64(first&0x3f)<<24 | uint64(rest[0])<<16 | uint64(rest[1])<<8 | uint64(rest[2])
		if v < 1<<14 {
			return 0, malformed(ErrBadLength, "%s length %d is not minimally encoded", field, v)
		}
		return v, nil
	default:
		return 0, malformed(ErrBadLength, "%s length uses the reserved 0b11 prefix", field)
	}
}

// readOpaqueV reads a non-empty opaque<V> of at most max bytes. The result
// aliases the input.
func readOpaqueV(s *cryptobyte.String, field string, max int) ([]byte, error) {
	n, err := readVarint(s, field)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, malformed(ErrEmptyField, "%s", field)
	}
	if n > uint64(max) {
		return nil, malformed(ErrFieldTooLarge, "%s is %d bytes, limit %d", field, n, max)
	}
	var v []byte
	if !s.ReadBytes(&v, int(n)) {
		return nil, malformed(ErrTruncated, "%s: want %d bytes, have %d", field, n, len(*s))
	}
	return v, nil
}

// ReadVector reads an opaque<V> that may be empty, without a size limit
// beyond the varint's. Used when skipping MLS fields.
func ReadVector(s *cryptobyte.String, field string) ([]byte, error) {
	n, err := readVarint(s, field)
	if err != nil {
		return nil, err
	}
	var v []byte
	if !s.ReadBytes(&v, int(n)) {
		return nil, malformed(ErrTruncated, "%s: want %d bytes, have %d", field, n, len(*s))
	}
	return v, nil
}

// AddVector writes data as opaque<V> with a minimal varint prefix.
func AddVector(b *cryptobyte.Builder, data []byte) {
	n := len(data)
	switch {
	case n < 1<<6:
		b.AddUint8(uint8(n))
	case n < 1<<14:
		b.AddUint16(uint16(n) | 0x4000)
	case n < 1<<30:
		b.AddUint32(uint32(n) | 0x80000000)
	default:
		b.SetError(fmt.Errorf("coord: vector of %d bytes exceeds the MLS varint range", n))
		return
	}
	b.AddBytes(data)
}
