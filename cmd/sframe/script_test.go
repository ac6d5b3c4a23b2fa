package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the scripts in testdata/*.txtar run `sframe` as a command:
// testscript re-executes this test binary, which then runs the CLI's run.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"sframe": func() {
			code := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
			// testscript only tells zero from non-zero; record the code
			// for the scripts' `status` command (1 failure, 2 usage).
			if f := os.Getenv("SFRAME_STATUS_FILE"); f != "" {
				os.WriteFile(f, []byte(strconv.Itoa(code)), 0o644)
			}
			os.Exit(code)
		},
	})
}

// TestScripts runs the CLI scripts in testdata: round trips and user
// mistakes, each checked for its exit code and message.
func TestScripts(t *testing.T) {
	vectors, err := filepath.Abs("../../sframe/testdata")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(e *testscript.Env) error {
			// The RFC 9605 vectors, read in place rather than copied.
			e.Setenv("VECTORS", vectors)
			e.Setenv("SFRAME_STATUS_FILE", filepath.Join(e.WorkDir, ".status"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// status N: the last sframe command exited with code N.
			"status": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: status CODE")
				}
				got := strings.TrimSpace(ts.ReadFile(ts.Getenv("SFRAME_STATUS_FILE")))
				if got != args[0] {
					ts.Fatalf("sframe exited with %s, want %s", got, args[0])
				}
			},
			// flipfield FILE FIELD: flip the lowest bit of the hex string
			// value of every "FIELD": "<hex>" in the JSON FILE.
			"flipfield": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: flipfield FILE FIELD")
				}
				re := regexp.MustCompile(`("` + regexp.QuoteMeta(args[1]) + `":\s*"[0-9a-fA-F]*)([0-9a-fA-F])"`)
				b := []byte(ts.ReadFile(args[0]))
				if !re.Match(b) {
					ts.Fatalf("%s has no hex field %q", args[0], args[1])
				}
				b = re.ReplaceAllFunc(b, func(m []byte) []byte {
					i := len(m) - 2 // the last hex digit
					d, _ := strconv.ParseUint(string(m[i]), 16, 8)
					m[i] = strconv.FormatUint(d^1, 16)[0]
					return m
				})
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
			},
			// bytes FILE N: write N pseudo-random bytes (all 256 values) to FILE.
			"bytes": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: bytes FILE N")
				}
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(i*7 + i>>8)
				}
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
			},
			// flipfile FILE: flip the lowest bit of FILE's last byte.
			"flipfile": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: flipfile FILE")
				}
				b := []byte(ts.ReadFile(args[0]))
				if len(b) == 0 {
					ts.Fatalf("%s is empty", args[0])
				}
				b[len(b)-1] ^= 1
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
			},
			// truncate FILE N: keep the first N bytes of FILE.
			"truncate": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 2 {
					ts.Fatalf("usage: truncate FILE N")
				}
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				ts.Check(os.Truncate(ts.MkAbs(args[0]), int64(n)))
			},
		},
	})
}
