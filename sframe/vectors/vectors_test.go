package vectors

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/moqsframe/moqsframe/internal/impl"
)

func TestRFC9605Vectors(t *testing.T) {
	want := map[string]int{ // cases per file, so a lost section cannot pass silently
		"../testdata/test-vectors.json":        289 + 3 + 3 + 5,
		"../testdata/test-vectors-aes256.json": 3,
		// Counters 2^64-1, MaxCounter and MaxCounter-1 for suites 1, 4
		// and 5, from testdata/gen-vectors.py (Python, pyca/cryptography).
		"testdata/ctr-edge.json": 9,
	}
	// Every HMAC-SHA256 path: the one-pass SHA-NI seal, and the pure-Go
	// block function (with the separate CTR) that other CPUs run.
	t.Cleanup(func() { impl.Reset("hmacsha256") })
	for _, path := range impl.Available("hmacsha256") {
		if !impl.Select("hmacsha256", path) {
			t.Fatalf("cannot select hmacsha256 %s", path)
		}
		for file, n := range want {
			results, err := CheckFile(file)
			if err != nil {
				t.Fatal(err)
			}
			passed, failed := Summary(results)
			for _, r := range results {
				if r.Err != nil {
					t.Errorf("hmacsha256 %s: %s: %v", path, file, r)
				}
			}
			if passed != n || failed != 0 {
				t.Errorf("hmacsha256 %s: %s: %d passed, %d failed; want %d passed", path, file, passed, failed, n)
			}
		}
	}
}

// A corrupted vector must fail: the checker is not allowed to pass anything.
func TestCorruptedVectorsFail(t *testing.T) {
	b, err := os.ReadFile("../testdata/test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to string }{
		{`"encoded": "08ff"`, `"encoded": "0800ff"`}, // non-minimal header
		{`"ct": "6339af04ada1d064688a442b8dc69d5b6bfa40f4bef0583e8081069cc60705"`, `"ct": "6339af04ada1d064688a442b8dc69d5b6bfa40f4bef0583e8081069cc60706"`}, // tag
		{`"metadata": "4945544620534672616d65205747"`, `"metadata": "4945544620534672616d65205748"`},
	} {
		doc := strings.Replace(string(b), c.from, c.to, 1)
		if doc == string(b) {
			t.Fatalf("corruption %q not applied", c.from)
		}
		results, err := Check([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, failed := Summary(results); failed == 0 {
			t.Errorf("corruption %q -> %q: no case failed", c.from, c.to)
		}
	}
}

// Every field of an SFrame case is compared: flipping one bit of any of
// them fails the case with an ErrMismatch naming that field (or, for the
// inputs, the first value computed from it).
func TestEveryFieldCompared(t *testing.T) {
	for _, file := range []string{"../testdata/test-vectors.json", "testdata/ctr-edge.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			SFrame []map[string]any `json:"sframe"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // CTRs near 2^64 do not fit a float64
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		for i, orig := range doc.SFrame {
			for field, want := range map[string]string{
				"sframe_key_label":  "sframe_key_label",
				"sframe_salt_label": "sframe_salt_label",
				"sframe_secret":     "sframe_secret",
				"sframe_key":        "sframe_key",
				"sframe_salt":       "sframe_salt",
				"nonce":             "nonce",
				"aad":               "aad",
				"ct":                "ct",
				"base_key":          "sframe_secret",
				"metadata":          "aad",
				"pt":                "ct",
			} {
				c := clone(orig)
				h := c[field].(string)
				c[field] = h[:len(h)-1] + string("10"[h[len(h)-1]&1]) // flip the last bit
				err := checkOne(t, c)
				if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), ": "+want+" ") && !strings.Contains(err.Error(), ": "+want+":") {
					t.Errorf("%s sframe[%d] with %s altered: %v, want a mismatch of %s", file, i, field, err, want)
				}
			}
			for _, field := range sframeFields {
				c := clone(orig)
				delete(c, field)
				if err := checkOne(t, c); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), `"`+field+`"`) {
					t.Errorf("%s sframe[%d] without %s: %v", file, i, field, err)
				}
				c[field] = nil
				if err := checkOne(t, c); !errors.Is(err, ErrIncomplete) {
					t.Errorf("%s sframe[%d] with %s null: %v", file, i, field, err)
				}
			}
		}
	}
}

// A header case with a null KID or CTR is incomplete, not a panic.
func TestNullHeaderFields(t *testing.T) {
	for _, doc := range []string{
		`{"header": [{"kid": null, "ctr": 0, "encoded": "00"}]}`,
		`{"header": [{"kid": 0, "encoded": "00"}]}`,
	} {
		results, err := Check([]byte(doc))
		if err != nil || len(results) != 1 || !errors.Is(results[0].Err, ErrIncomplete) {
			t.Errorf("%s: %v %v", doc, results, err)
		}
	}
}

func clone(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func checkOne(t *testing.T, c map[string]any) error {
	t.Helper()
	b, err := json.Marshal(map[string]any{"sframe": []any{c}})
	if err != nil {
		t.Fatal(err)
	}
	results, err := Check(b)
	if err != nil || len(results) != 1 {
		t.Fatalf("Check: %v, %d results", err, len(results))
	}
	return results[0].Err
}

// FuzzCheck: a vector file is untrusted input; any bytes give results or
// an error, never a panic.
func FuzzCheck(f *testing.F) {
	for _, file := range []string{"../testdata/test-vectors-aes256.json", "testdata/ctr-edge.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"header": [{"kid": 1, "ctr": 1, "encoded": "11"}]}`))
	f.Add([]byte(`{"x": [{"key": "000102030405060708090a0b0c0d0e0f", "nonce": "00", "cipher_suite": 4, "aad": "", "pt": "", "ct": ""}]}`))
	f.Add([]byte(`{"x": [{"key": "000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f", "nonce": "00", "cipher_suite": 1, "aad": "", "pt": "", "ct": ""}]}`))
	f.Add([]byte(`{"x": [{"key": "00", "nonce": "00", "cipher_suite": 4, "aad": "", "pt": "", "ct": ""}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		results, err := Check(b)
		if err == nil {
			Summary(results)
		}
	})
}
