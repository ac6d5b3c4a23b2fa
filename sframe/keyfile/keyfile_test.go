package keyfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moqsframe/moqsframe/sframe"
)

func TestParse(t *testing.T) {
	suite, key, err := Parse([]byte(`{"suite": 4, "base_key": "000102030405060708090a0b0c0d0e0f"}`))
	if err != nil || suite != sframe.AES128GCMSHA256_128 || !bytes.Equal(key, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}) {
		t.Fatalf("Parse = %v, %x, %v", suite, key, err)
	}
	// Marshal's output parses back to the same suite and key.
	k48 := bytes.Repeat([]byte{0xab}, 48)
	suite, key, err = Parse(Marshal(sframe.AES128CTRHMACSHA256_80, k48))
	if err != nil || suite != sframe.AES128CTRHMACSHA256_80 || !bytes.Equal(key, k48) {
		t.Fatalf("Parse(Marshal) = %v, %x, %v", suite, key, err)
	}
}

func TestParseErrors(t *testing.T) {
	const secret = "5ec2e75ec2e75ec2e75ec2e75ec2e7" // must never be echoed
	for _, c := range []struct {
		doc  string
		want error
		msg  string
	}{
		{`{"suite": 4, "base_key": "0001"}`, ErrKeyLength, "base_key is 2 bytes; AES_128_GCM_SHA256_128 (suite 4) needs at least 16 (32 hex digits)"},
		{`{"suite": 5, "base_key": "000102030405060708090a0b0c0d0e0f"}`, ErrKeyLength, "AES_256_GCM_SHA512_128 (suite 5) needs at least 32"},
		{`{"suite": 1, "base_key": "000102030405060708090a0b0c0d0e0f"}`, ErrKeyLength, "needs at least 48"},
		{`{"suite": 99, "base_key": "` + secret + `"}`, sframe.ErrUnsupportedSuite, "suite 99"},
		{`{"suite": 65540, "base_key": "` + secret + `"}`, sframe.ErrUnsupportedSuite, "suite 65540"},
		{`{"suite": 4, "base_key": "` + secret + `zz"}`, ErrFormat, "base_key is not hex"},
		{`{"suite": 4}`, ErrFormat, `no "base_key"`},
		{`{"base_key": "` + secret + `"}`, ErrFormat, `no "suite"`},
		{`{"suite": 4, "basekey": "` + secret + `"}`, ErrFormat, `unknown field "basekey"`},
		{`{"suite": "4", "base_key": "` + secret + `"}`, ErrFormat, "cannot unmarshal"},
		{`{"suite": 4, "base_key": 5121234}`, ErrFormat, "cannot unmarshal"},
		{`{"suite": 4, "base_key": "` + secret + `"} {}`, ErrFormat, "data after the JSON object"},
		{secret, ErrFormat, ""},
		{"", ErrFormat, ""},
	} {
		_, _, err := Parse([]byte(c.doc))
		if !errors.Is(err, c.want) || !strings.Contains(errText(err), c.msg) {
			t.Errorf("Parse(%s) = %v, want %v containing %q", c.doc, err, c.want, c.msg)
			continue
		}
		if strings.Contains(err.Error(), secret[:8]) || strings.Contains(err.Error(), "5121234") {
			t.Errorf("Parse(%s): error %q shows the key", c.doc, err)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.json")
	if err := os.WriteFile(p, []byte(`{"suite": 4, "base_key": "00"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(p); !errors.Is(err, ErrKeyLength) || !strings.HasPrefix(err.Error(), p+": ") {
		t.Errorf("Load = %v, want ErrKeyLength naming %s", err, p)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), maxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(big); !errors.Is(err, ErrFormat) {
		t.Errorf("Load(big) = %v, want ErrFormat", err)
	}
	if _, _, err := Load(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}

// FuzzParse: any bytes give a key of the suite's length or a typed error.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"suite": 4, "base_key": "000102030405060708090a0b0c0d0e0f"}`))
	f.Add([]byte(`{"suite": 5, "base_key": "00"}`))
	f.Add([]byte(`{"suite": 1e3, "base_key": ""}`))
	f.Add([]byte(`{"suite": -1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		suite, key, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrKeyLength) && !errors.Is(err, sframe.ErrUnsupportedSuite) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !suite.Supported() || len(key) < suite.KeySize() {
			t.Fatalf("accepted suite %v with %d-byte key", suite, len(key))
		}
	})
}
