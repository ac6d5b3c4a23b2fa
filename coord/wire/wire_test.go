package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moqsframe/moqsframe/coord/wire/wiretest"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, n := range []int{1, 63, 64, 16383, 16384, 100000} {
		for _, typ := range []RequestType{RequestJoin, RequestLeave} {
			r := Request{GroupID: []byte("room-1"), Type: typ, Body: bytes.Repeat([]byte{0xab}, n)}
			enc, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := UnmarshalRequest(enc)
			if err != nil {
				t.Fatalf("n=%d %v: %v", n, typ, err)
			}
			if string(got.GroupID) != "room-1" || got.Type != typ || !bytes.Equal(got.Body, r.Body) {
				t.Fatalf("n=%d %v: round trip mismatch", n, typ)
			}
		}
	}
	// Exact bytes for a small join (group "g", body 0x01 0x02).
	enc, _ := (&Request{GroupID: []byte("g"), Type: RequestJoin, Body: []byte{1, 2}}).Marshal()
	if want := []byte{0x01, 'g', 0x01, 0x02, 0x01, 0x02}; !bytes.Equal(enc, want) {
		t.Fatalf("encoding = %x, want %x", enc, want)
	}
}

func TestCommitRequestRoundTrip(t *testing.T) {
	for _, w := range [][]byte{nil, {0x42}, bytes.Repeat([]byte{7}, 20000)} {
		c := CommitRequest{GroupID: []byte("g"), Epoch: 1<<40 + 5, Commit: bytes.Repeat([]byte{1}, 70), Welcome: w}
		enc, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalCommitRequest(enc)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.GroupID) != "g" || got.Epoch != c.Epoch || !bytes.Equal(got.Commit, c.Commit) ||
			!bytes.Equal(got.Welcome, w) || (got.Welcome == nil) != (w == nil) {
			t.Fatalf("round trip mismatch (welcome len %d)", len(w))
		}
	}
	enc, _ := (&CommitRequest{GroupID: []byte("g"), Epoch: 3, Commit: []byte{9}}).Marshal()
	want := []byte{0x01, 'g', 0, 0, 0, 0, 0, 0, 0, 3, 0x01, 9, 0x00}
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoding = %x, want %x", enc, want)
	}
}

func TestMarshalRejects(t *testing.T) {
	bad := []Request{
		{GroupID: nil, Type: RequestJoin, Body: []byte{1}},
		{GroupID: []byte("g"), Type: 3, Body: []byte{1}},
		{GroupID: []byte("g"), Type: RequestJoin, Body: nil},
		{GroupID: bytes.Repeat([]byte("a"), 256), Type: RequestJoin, Body: []byte{1}},
	}
	for i, r := range bad {
		if _, err := r.Marshal(); err == nil {
			t.Errorf("case %d: Marshal accepted an invalid Request", i)
		}
	}
	if _, err := (&CommitRequest{GroupID: []byte("g"), Commit: []byte{1}, Welcome: []byte{}}).Marshal(); err == nil {
		t.Error("Marshal accepted an empty (present) welcome")
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name   string
		commit bool
		in     []byte
		want   error
	}{
		{"empty", false, nil, ErrTruncated},
		{"trailing", false, []byte{1, 'g', 1, 1, 9, 0xff}, ErrTrailingData},
		{"unknown type 0", false, []byte{1, 'g', 0, 1, 9}, ErrUnknownRequestType},
		{"unknown type 3", false, []byte{1, 'g', 3, 1, 9}, ErrUnknownRequestType},
		{"no type", false, []byte{1, 'g'}, ErrTruncated},
		{"body truncated", false, []byte{1, 'g', 1, 5, 9}, ErrTruncated},
		{"empty group", false, []byte{0, 1, 1, 9}, ErrEmptyField},
		{"empty body", false, []byte{1, 'g', 1, 0}, ErrEmptyField},
		{"non-minimal 2-byte", false, []byte{0x40, 0x01, 'g', 1, 1, 9}, ErrBadLength},
		{"non-minimal 4-byte", false, []byte{1, 'g', 1, 0x80, 0, 0, 1, 9}, ErrBadLength},
		{"reserved prefix", false, []byte{0xc0, 1, 'g', 1, 1, 9}, ErrBadLength},
		{"group too long", false, append([]byte{0x41, 0x00}, bytes.Repeat([]byte("a"), 256)...), ErrFieldTooLarge},
		{"commit: truncated epoch", true, []byte{1, 'g', 0, 0, 0}, ErrTruncated},
		{"commit: bad optional", true, []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 1, 1, 9, 2}, ErrBadOptional},
		{"commit: missing optional", true, []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 1, 1, 9}, ErrTruncated},
		{"commit: trailing", true, []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 1, 1, 9, 0, 0}, ErrTrailingData},
		{"commit: empty welcome", true, []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 1, 1, 9, 1, 0}, ErrEmptyField},
		{"commit: empty commit", true, []byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, ErrEmptyField},
	}
	for _, tc := range cases {
		var err error
		if tc.commit {
			_, err = UnmarshalCommitRequest(tc.in)
		} else {
			_, err = UnmarshalRequest(tc.in)
		}
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want %v wrapped with ErrMalformed", tc.name, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := CommitRequest{GroupID: []byte("g"), Epoch: 4, Commit: wiretest.Commit("g", 4, "x"), Welcome: wiretest.Welcome("w")}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []CommitRequest{
		{GroupID: []byte("g"), Epoch: 5, Commit: wiretest.Commit("g", 4, "x")},                        // epoch differs
		{GroupID: []byte("h"), Epoch: 4, Commit: wiretest.Commit("g", 4, "x")},                        // group differs
		{GroupID: []byte("g"), Epoch: 4, Commit: wiretest.Handshake("g", 4, ContentTypeProposal, "")}, // not a commit
		{GroupID: []byte("g"), Epoch: 4, Commit: wiretest.Commit("g", 4, "x"), Welcome: wiretest.Commit("g", 4, "")},
		{GroupID: []byte("g"), Epoch: 4, Commit: []byte{0, 1, 0, 1, 1}},
		{GroupID: []byte("g"), Epoch: 4, Commit: []byte{0, 2, 0, 1}},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: Validate accepted an inconsistent CommitRequest", i)
		}
	}
	leave := Request{GroupID: []byte("g"), Type: RequestLeave, Body: wiretest.Handshake("g", 2, ContentTypeProposal, "")}
	if err := leave.Validate(); err != nil {
		t.Fatal(err)
	}
	leave.Body = wiretest.Commit("g", 2, "")
	if err := leave.Validate(); !errors.Is(err, ErrMLSMismatch) {
		t.Fatalf("leave carrying a commit: err = %v, want ErrMLSMismatch", err)
	}
	join := Request{GroupID: []byte("g"), Type: RequestJoin, Body: []byte{0, 2, 0, 1}}
	if err := join.Validate(); !errors.Is(err, ErrMLSMismatch) {
		t.Fatalf("join with KeyPackage version 2: err = %v", err)
	}
}

// Fuzz targets: a successful decode must re-encode to exactly the input
// (the encoding is canonical), and decoding must never panic.

func FuzzUnmarshalRequest(f *testing.F) {
	for _, r := range []Request{
		{GroupID: []byte("g"), Type: RequestJoin, Body: wiretest.KeyPackage("kp")},
		{GroupID: []byte("room"), Type: RequestLeave, Body: wiretest.Handshake("room", 3, ContentTypeProposal, "p")},
		{GroupID: []byte("g"), Type: RequestJoin, Body: bytes.Repeat([]byte{1}, 300)},
	} {
		enc, _ := r.Marshal()
		f.Add(enc)
	}
	f.Add([]byte{1, 'g', 3, 1, 9})
	f.Add([]byte{0x40, 0x01, 'g', 1, 1, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := UnmarshalRequest(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		_ = r.Validate()
		enc, err := r.Marshal()
		if err != nil {
			t.Fatalf("decoded Request does not re-encode: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, enc)
		}
	})
}

func FuzzUnmarshalCommitRequest(f *testing.F) {
	for _, c := range []CommitRequest{
		{GroupID: []byte("g"), Epoch: 0, Commit: wiretest.Commit("g", 0, "c")},
		{GroupID: []byte("g"), Epoch: 7, Commit: wiretest.Commit("g", 7, "c"), Welcome: wiretest.Welcome("w")},
	} {
		enc, _ := c.Marshal()
		f.Add(enc)
	}
	f.Add([]byte{1, 'g', 0, 0, 0, 0, 0, 0, 0, 1, 1, 9, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := UnmarshalCommitRequest(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		_ = c.Validate()
		enc, err := c.Marshal()
		if err != nil {
			t.Fatalf("decoded CommitRequest does not re-encode: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, enc)
		}
	})
}

func FuzzParseMLSHeader(f *testing.F) {
	f.Add(wiretest.Commit("g", 1, "x"))
	f.Add(wiretest.Welcome("w"))
	f.Add([]byte{0, 1, 0, 2, 1, 'g', 0, 0, 0, 0, 0, 0, 0, 9, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseMLSHeader(data)
		if err != nil {
			return
		}
		if h.WireFormat == WireFormatPublicMessage || h.WireFormat == WireFormatPrivateMessage {
			// A parsed header must have come from the input.
			if !bytes.Contains(data, h.GroupID) {
				t.Fatal("group_id not taken from the input")
			}
		}
	})
}

func TestParseKeyPackageLeaf(t *testing.T) {
	kp, err := ParseKeyPackageLeaf(wiretest.KeyPackageX509([]byte("sig"), []byte("leaf"), []byte("ca")))
	if err != nil {
		t.Fatal(err)
	}
	if kp.CipherSuite != 2 || string(kp.SignatureKey) != "sig" || kp.CredentialType != CredentialX509 ||
		len(kp.Certificates) != 2 || string(kp.Certificates[0]) != "leaf" {
		t.Fatalf("%+v", kp)
	}
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"no certs":       wiretest.KeyPackageX509([]byte("sig")),
		"truncated":      wiretest.KeyPackageX509([]byte("sig"), []byte("leaf"))[:12],
		"too many certs": wiretest.KeyPackageX509([]byte("s"), make([][]byte, 9)...),
		"version 2":      append([]byte{0, 2}, wiretest.KeyPackageX509(nil, []byte("x"))[2:]...),
	} {
		if _, err := ParseKeyPackageLeaf(bad); err == nil {
			t.Errorf("%s: parsed", name)
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMLSMismatch) {
			t.Errorf("%s: untyped error %v", name, err)
		}
	}
}

func FuzzParseKeyPackageLeaf(f *testing.F) {
	f.Add(wiretest.KeyPackageX509([]byte("sig"), []byte("leaf"), []byte("ca")))
	f.Add(wiretest.KeyPackageX509(nil, []byte("x")))
	f.Add([]byte{0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		kp, err := ParseKeyPackageLeaf(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMLSMismatch) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if kp.CredentialType == CredentialX509 && (len(kp.Certificates) == 0 || len(kp.Certificates) > maxCertificates) {
			t.Fatalf("%d certificates", len(kp.Certificates))
		}
	})
}

func TestProposalSender(t *testing.T) {
	e, leaf, err := ProposalSender(wiretest.Handshake("g", 7, ContentTypeProposal, "rest"))
	if err != nil || e != 7 || leaf != 2 {
		t.Fatalf("ProposalSender = %d %d %v", e, leaf, err)
	}
	for name, tc := range map[string]struct {
		msg  []byte
		want error
	}{
		"truncated":       {wiretest.Handshake("g", 7, ContentTypeProposal, "")[:12], ErrMalformed},
		"welcome":         {wiretest.Welcome("w"), ErrMLSMismatch},
		"external sender": {append([]byte{0, 1, 0, 1, 1, 'g', 0, 0, 0, 0, 0, 0, 0, 7}, 2, 0, 0, 0, 0), ErrMLSMismatch},
		"not mls10":       {[]byte{0, 2, 0, 1, 1, 'g'}, ErrMLSMismatch},
	} {
		if _, _, err := ProposalSender(tc.msg); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}
