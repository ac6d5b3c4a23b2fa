package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

const key = "000102030405060708090a0b0c0d0e0f"

func TestEncryptMatchesRFCVector(t *testing.T) {
	// RFC 9605 Appendix C.3, suite 4: kid 0x123, ctr 0x4567.
	pt, _ := hex.DecodeString("64726166742d696574662d736672616d652d656e63")
	out, stderr, code := runCLI(t, pt, "encrypt", "-suite", "4", "-key", key, "-kid", "291", "-ctr", "17767",
		"-metadata-hex", "4945544620534672616d65205747")
	want := "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb"
	if code != 0 || hexOf(out) != want {
		t.Fatalf("code %d stderr %q\n got %s\nwant %s", code, stderr, hexOf(out), want)
	}
}

func TestRoundTripAndTamper(t *testing.T) {
	for _, suite := range []string{"1", "2", "3", "4", "5"} {
		k := key // each suite's AEAD key length: 16, 32 or 48 bytes
		switch suite {
		case "5":
			k += key
		case "1", "2", "3":
			k += key + key
		}
		ct, _, code := runCLI(t, []byte("media"), "encrypt", "-suite", suite, "-key", k, "-kid", "9", "-metadata", "t/1")
		if code != 0 {
			t.Fatalf("suite %s encrypt failed", suite)
		}
		pt, stderr, code := runCLI(t, []byte(ct), "decrypt", "-suite", suite, "-key", k, "-metadata", "t/1")
		if code != 0 || pt != "media" {
			t.Fatalf("suite %s decrypt: %q %q %d", suite, pt, stderr, code)
		}
		if _, stderr, code := runCLI(t, []byte(ct), "decrypt", "-suite", suite, "-key", k, "-metadata", "t/2"); code != 1 ||
			!strings.Contains(stderr, "authentication failed") {
			t.Fatalf("suite %s wrong metadata: code %d %q", suite, code, stderr)
		}
	}
}

func TestInspect(t *testing.T) {
	ct, _, _ := runCLI(t, []byte("hello"), "encrypt", "-key", key, "-kid", "291", "-ctr", "17767")
	out, _, code := runCLI(t, []byte(ct), "inspect", "-suite", "4")
	for _, want := range []string{"kid:        291 (0x123)", "ctr:        17767 (0x4567)", "ciphertext: 5 bytes", "(16 bytes)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if _, stderr, code := runCLI(t, []byte{0xff}, "inspect"); code != 1 || !strings.Contains(stderr, "malformed header") {
		t.Fatalf("malformed: %d %q", code, stderr)
	}
}

func TestVerifyVectors(t *testing.T) {
	out, _, code := runCLI(t, nil, "verify-vectors", "../../sframe/testdata/test-vectors.json", "../../sframe/testdata/test-vectors-aes256.json")
	if code != 0 || lastLine(out) != "303 passed, 0 failed" {
		t.Fatalf("code %d, last line %q", code, lastLine(out))
	}
	b, _ := os.ReadFile("../../sframe/testdata/test-vectors.json")
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, bytes.Replace(b, []byte(`"encoded": "08ff"`), []byte(`"encoded": "08fe"`), 1), 0o644)
	out, _, code = runCLI(t, nil, "verify-vectors", bad)
	if code != 1 || lastLine(out) != "299 passed, 1 failed" {
		t.Fatalf("corrupted: code %d, last line %q", code, lastLine(out))
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"encrypt"}, {"encrypt", "-key", "zz"}, {"decrypt", "-suite", "99", "-key", key}, {"verify-vectors"}} {
		if _, _, code := runCLI(t, nil, args...); code == 0 {
			t.Errorf("%q succeeded", args)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }
