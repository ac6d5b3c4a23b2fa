package keyschedule

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"testing"

	"github.com/moqsframe/moqsframe/internal/mlsvectors"
	"github.com/moqsframe/moqsframe/sframe"
)

// --- RFC 9420 MLS-Exporter, implemented here independently for the tests ---

// mlsVarint appends an MLS variable-length vector length (RFC 9420 §2.1.2).
func mlsVarint(b []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return binary.BigEndian.AppendUint16(b, uint16(n)|0x4000)
	default:
		return binary.BigEndian.AppendUint32(b, uint32(n)|0x80000000)
	}
}

func mlsOpaque(b, v []byte) []byte { return append(mlsVarint(b, len(v)), v...) }

// expandWithLabel(secret, label, context, length) = HKDF-Expand(secret,
// KDFLabel, length), KDFLabel = uint16 length || opaque label<V> = "MLS 1.0 "
// + label || opaque context<V>.
func expandWithLabel(h func() hash.Hash, secret []byte, label string, context []byte, length int) []byte {
	info := binary.BigEndian.AppendUint16(nil, uint16(length))
	info = mlsOpaque(info, []byte("MLS 1.0 "+label))
	info = mlsOpaque(info, context)
	out, err := hkdf.Expand(h, secret, string(info), length)
	if err != nil {
		panic(err)
	}
	return out
}

func deriveSecret(h func() hash.Hash, secret []byte, label string) []byte {
	return expandWithLabel(h, secret, label, nil, h().Size())
}

// mlsExporter is MLS-Exporter(Label, Context, Length) =
// ExpandWithLabel(DeriveSecret(exporter_secret, Label), "exported",
// Hash(Context), Length).
type mlsExporter struct {
	h      func() hash.Hash
	secret []byte
}

func (e mlsExporter) Export(label string, context []byte, length int) ([]byte, error) {
	hc := e.h()
	hc.Write(context)
	return expandWithLabel(e.h, deriveSecret(e.h, e.secret, label), "exported", hc.Sum(nil), length), nil
}

// mlsSuiteHash is the hash of the MLS cipher suites of RFC 9420 §17.1.
var mlsSuiteHash = map[uint16]func() hash.Hash{
	1: sha256.New, 2: sha256.New, 3: sha256.New,
	4: sha512.New, 5: sha512.New, 6: sha512.New,
	7: sha512.New384,
}

func loadVectors(t *testing.T) []mlsvectors.KeySchedule {
	t.Helper()
	vs, err := mlsvectors.KeySchedules()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestMLSExporterVectors checks the test's MLS-Exporter against every epoch
// of the mlswg key-schedule vectors, so the exporter outputs fed to the
// schedule below are the ones a conforming MLS stack would produce.
func TestMLSExporterVectors(t *testing.T) {
	checked := 0
	for _, v := range loadVectors(t) {
		h, ok := mlsSuiteHash[v.CipherSuite]
		if !ok {
			t.Logf("MLS suite %d: no hash, skipped", v.CipherSuite)
			continue
		}
		for i, e := range v.Epochs {
			ex := mlsExporter{h, e.ExporterSecret}
			// The vectors use the label text as given (it happens to be
			// hex digits) and hex-encode the context.
			got, _ := ex.Export(e.Exporter.Label, e.Exporter.Context, e.Exporter.Length)
			if want := e.Exporter.Secret; !bytes.Equal(got, want) {
				t.Fatalf("MLS suite %d epoch %d: exporter %x, want %x", v.CipherSuite, i, got, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no vector checked")
	}
	t.Logf("%d exporter outputs reproduced", checked)
}

// TestRFCKIDFigure checks the KIDs of RFC 9605 Figure 7 (E=4, S=6).
func TestRFCKIDFigure(t *testing.T) {
	cases := []struct{ epoch, index, context, kid uint64 }{
		{14, 3, 0, 0x3e}, {14, 7, 0, 0x7e}, {14, 20, 0, 0x14e},
		{15, 3, 0, 0x3f}, {15, 5, 0, 0x5f},
		{16, 2, 2, 0x820}, {16, 2, 3, 0xc20},
		{17, 33, 0, 0x211}, {17, 51, 0, 0x331},
	}
	l, err := NewLayout(64, 4)
	if err != nil || l.IndexBits != 6 {
		t.Fatalf("layout %+v err %v", l, err)
	}
	for _, c := range cases {
		kid, err := l.KID(c.context, c.index, c.epoch)
		if err != nil || kid != c.kid {
			t.Errorf("epoch %d index %d context %d: KID %#x err %v, want %#x", c.epoch, c.index, c.context, kid, err, c.kid)
		}
		ctx, idx, low := l.Split(kid)
		if ctx != c.context || idx != c.index || low != c.epoch%16 {
			t.Errorf("Split(%#x) = %d,%d,%d", kid, ctx, idx, low)
		}
	}
}

func TestIndexBits(t *testing.T) {
	for _, c := range []struct {
		n uint64
		s uint
	}{{1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {64, 6}, {65, 7}, {1 << 40, 40}, {1<<40 + 1, 41}, {1 << 63, 63}, {1<<63 + 1, 64}} {
		if got := IndexBits(c.n); got != c.s {
			t.Errorf("IndexBits(%d) = %d, want %d", c.n, got, c.s)
		}
	}
}

func TestLayoutOverflow(t *testing.T) {
	l, err := NewLayout(64, 4)
	if err != nil {
		t.Fatal(err)
	}
	if l.ContextBits() != 54 || l.MaxContext() != 1<<54-1 {
		t.Fatalf("context bits %d max %#x", l.ContextBits(), l.MaxContext())
	}
	if _, err := l.KID(1<<54, 0, 0); !isErr(err, ErrContextRange) {
		t.Fatalf("context 2^54: %v", err)
	}
	if kid, err := l.KID(1<<54-1, 63, 15); err != nil || kid != ^uint64(0) {
		t.Fatalf("max KID %#x %v", kid, err)
	}
	if _, err := l.KID(0, 64, 0); !isErr(err, ErrInvalidEpoch) {
		t.Fatalf("index 64: %v", err)
	}
	// S+E = 64: only context 0.
	l, err = NewLayout(1<<60, 4)
	if err != nil || l.MaxContext() != 0 {
		t.Fatalf("%+v %v", l, err)
	}
	if _, err := l.KID(1, 0, 0); !isErr(err, ErrContextRange) {
		t.Fatalf("context 1 with S+E=64: %v", err)
	}
	if kid, _ := l.KID(0, 1<<60-1, 3); kid != ^uint64(0)-12 {
		t.Fatalf("kid %#x", kid)
	}
	if _, err := NewLayout(1<<60+1, 4); !isErr(err, ErrInvalidEpoch) {
		t.Fatalf("S+E=65: %v", err)
	}
	if _, err := NewLayout(0, 4); !isErr(err, ErrInvalidEpoch) {
		t.Fatalf("group 0: %v", err)
	}
	// E = 0: no epoch bits, group of one: the whole KID is context.
	l, _ = NewLayout(1, 0)
	if l.MaxContext() != ^uint64(0) {
		t.Fatalf("max context %#x", l.MaxContext())
	}
	if kid, _ := l.KID(12345, 0, 99); kid != 12345 {
		t.Fatalf("kid %d", kid)
	}
}

// sframeKeySalt derives sframe_key and sframe_salt (RFC 9605 §4.4.2) with
// crypto/hkdf directly, independently of the sframe package.
func sframeKeySalt(t testing.TB, h func() hash.Hash, suite uint16, kid uint64, baseKey []byte, nk int) (key, salt []byte) {
	t.Helper()
	secret, err := hkdf.Extract(h, baseKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	label := func(p string) string {
		b := append([]byte(p), binary.BigEndian.AppendUint64(nil, kid)...)
		return string(binary.BigEndian.AppendUint16(b, suite))
	}
	key, _ = hkdf.Expand(h, secret, label("SFrame 1.0 Secret key "), nk)
	salt, _ = hkdf.Expand(h, secret, label("SFrame 1.0 Secret salt "), 12)
	return key, salt
}

// openGCM decrypts an SFrame ciphertext with AES-GCM and the given key and
// salt, independently of the sframe package.
func openGCM(t testing.TB, key, salt, metadata, ct []byte) (kid, ctr uint64, pt []byte) {
	t.Helper()
	h, n, err := sframe.ParseHeader(ct)
	if err != nil {
		t.Fatal(err)
	}
	nonce := bytes.Clone(salt)
	binary.BigEndian.PutUint64(nonce[4:], binary.BigEndian.Uint64(nonce[4:])^h.CTR)
	blk, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(blk)
	aad := append(bytes.Clone(ct[:n]), metadata...)
	pt, err = g.Open(nil, nonce, ct[n:], aad)
	if err != nil {
		t.Fatalf("independent AES-GCM open of KID %#x CTR %d: %v", h.KID, h.CTR, err)
	}
	return h.KID, h.CTR, pt
}

// TestKnownAnswerFromMLSVectors feeds real MLS exporter secrets (mlswg
// vectors, MLS suites 1 and 4 = SHA-256 and SHA-512 based) through the
// schedule and checks every step against an independent computation: the
// base key from the test's MLS-Exporter, the KID from the RFC formula, and
// the SFrame key and salt from crypto/hkdf, by decrypting the schedule's
// output with crypto/aes directly.
func TestKnownAnswerFromMLSVectors(t *testing.T) {
	vs := loadVectors(t)
	type run struct {
		mlsSuite uint16
		suite    sframe.CipherSuite
		h        func() hash.Hash
	}
	// Each MLS suite paired with the SFrame suite of the same AEAD.
	for _, r := range []run{{1, sframe.AES128GCMSHA256_128, sha256.New}, {5, sframe.AES256GCMSHA512_128, sha512.New}} {
		var v *mlsvectors.KeySchedule
		for i := range vs {
			if vs[i].CipherSuite == r.mlsSuite {
				v = &vs[i]
			}
		}
		if v == nil {
			t.Fatalf("no vector for MLS suite %d", r.mlsSuite)
		}
		const groupSize, me, peer = 40, 3, 20 // S = 6
		tx, err := New(r.suite)
		if err != nil {
			t.Fatal(err)
		}
		rx, _ := New(r.suite)
		for i, e := range v.Epochs {
			epochNum := uint64(14 + i) // the RFC figure's epochs 14..18
			ex := mlsExporter{mlsSuiteHash[r.mlsSuite], e.ExporterSecret}
			ep, err := ExportEpoch(ex, r.suite, epochNum, groupSize, me)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ex.Export("SFrame 1.0 Base Key", nil, r.suite.KeySize())
			if !bytes.Equal(ep.BaseKey, want) || len(want) != r.suite.KeySize() {
				t.Fatalf("base key mismatch")
			}
			if i == 0 {
				t.Logf("MLS suite %d epoch 0: base_key %x", r.mlsSuite, ep.BaseKey)
			}
			if err := tx.Install(ep); err != nil {
				t.Fatal(err)
			}
			rep := ep
			rep.Index = peer
			if err := rx.Install(rep); err != nil {
				t.Fatal(err)
			}
			md := []byte("track/ns|name|group|object")
			pt := []byte("known answer")
			for _, ctx := range []uint64{0, 2, 3} {
				st, err := tx.Stream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ct, err := st.Seal(nil, md, pt)
				if err != nil {
					t.Fatal(err)
				}
				wantKID := ctx<<10 | me<<4 | epochNum%16
				key, salt := sframeKeySalt(t, r.h, uint16(r.suite), wantKID, want, r.suite.KeySize())
				kid, ctr, got := openGCM(t, key, salt, md, ct)
				if kid != wantKID || ctr != 0 || !bytes.Equal(got, pt) {
					t.Fatalf("epoch %d ctx %d: KID %#x CTR %d, want KID %#x CTR 0", epochNum, ctx, kid, ctr, wantKID)
				}
				// The same key and salt through the sframe package.
				k2, s2, err := sframe.DeriveKeySalt(r.suite, wantKID, ep.BaseKey)
				if err != nil || !bytes.Equal(k2, key) || !bytes.Equal(s2, salt) {
					t.Fatalf("sframe.DeriveKeySalt disagrees")
				}
				if i == 0 && ctx == 0 {
					t.Logf("MLS suite %d epoch 14: KID %#x sframe_key %x sframe_salt %x", r.mlsSuite, kid, key, salt)
				}
				if out, err := rx.Open(nil, md, ct); err != nil || !bytes.Equal(out, pt) {
					t.Fatalf("schedule open: %v", err)
				}
			}
		}
	}
}

// TestPinnedKnownAnswer pins one end-to-end answer, computed by the
// independent path above (MLS suite 1 epoch 0 exporter secret, epoch 14,
// index 3, context 0, AES_128_GCM_SHA256_128), so a change in any layer
// shows up as a diff of fixed bytes.
func TestPinnedKnownAnswer(t *testing.T) {
	vs := loadVectors(t)
	ex := mlsExporter{sha256.New, vs[0].Epochs[0].ExporterSecret}
	ep, err := ExportEpoch(ex, sframe.AES128GCMSHA256_128, 14, 64, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(ep.BaseKey); got != pinnedBaseKey {
		t.Fatalf("base_key %s, want %s", got, pinnedBaseKey)
	}
	key, salt := sframeKeySalt(t, sha256.New, 4, 0x3e, ep.BaseKey, 16)
	if hex.EncodeToString(key) != pinnedKey || hex.EncodeToString(salt) != pinnedSalt {
		t.Fatalf("key %x salt %x", key, salt)
	}
	s, _ := New(sframe.AES128GCMSHA256_128)
	if err := s.Install(ep); err != nil {
		t.Fatal(err)
	}
	ct, err := s.Seal(nil, []byte("md"), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	// Header 0x80 0x3e: KID 0x3e in one extra byte, CTR 0 in the config byte.
	if kid, ctr, pt := openGCM(t, key, salt, []byte("md"), ct); kid != 0x3e || ctr != 0 || string(pt) != "hello" {
		t.Fatalf("independent open: KID %#x CTR %d %q", kid, ctr, pt)
	}
	if got := hex.EncodeToString(ct); got != pinnedCiphertext {
		t.Fatalf("ciphertext %s, want %s", got, pinnedCiphertext)
	}
}

const (
	pinnedBaseKey    = "ac05c9e087590fc123efe6533126f808"
	pinnedKey        = "5cf5c0f6d967a9c5c4c694bac81bc5cd"
	pinnedSalt       = "f6e831ff75d8a05152c7d07c"
	pinnedCiphertext = "803e1980178d8faf96a1197646b1bd27dc0c81f63a59ed"
)
