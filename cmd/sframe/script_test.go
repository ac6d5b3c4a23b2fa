package main

import (
	"os"
	"path/filepath"
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
