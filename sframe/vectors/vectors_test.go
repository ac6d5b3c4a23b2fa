package vectors

import (
	"os"
	"strings"
	"testing"
)

func TestRFC9605Vectors(t *testing.T) {
	want := map[string]int{ // cases per file, so a lost section cannot pass silently
		"../testdata/test-vectors.json":        289 + 3 + 3 + 5,
		"../testdata/test-vectors-aes256.json": 3,
	}
	for file, n := range want {
		results, err := CheckFile(file)
		if err != nil {
			t.Fatal(err)
		}
		passed, failed := Summary(results)
		for _, r := range results {
			if r.Err != nil {
				t.Errorf("%s: %v", file, r)
			}
		}
		if passed != n || failed != 0 {
			t.Errorf("%s: %d passed, %d failed; want %d passed", file, passed, failed, n)
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
