// Package clitest holds the table test of the commands' parseFlags.
package clitest

import (
	"strings"
	"testing"

	"github.com/moqsframe/moqsframe/internal/proctest"
)

// Env is a getenv over key, value pairs.
func Env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// ParseCase is one row: parse Args with Env (nil: empty environment);
// either it fails with an error containing WantErr, on one line, or Check
// accepts the Config.
type ParseCase[C any] struct {
	Name    string
	Args    []string
	Env     func(string) string
	WantErr string
	Check   func(C) bool
}

// RunParse runs the rows against a command's parseFlags.
func RunParse[C any](t *testing.T, parse func([]string, func(string) string) (C, error), cases []ParseCase[C]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			getenv := tc.Env
			if getenv == nil {
				getenv = Env()
			}
			c, err := parse(tc.Args, getenv)
			if tc.WantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.WantErr) {
					t.Fatalf("want error containing %q, got %v", tc.WantErr, err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.Check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

// SyncBuffer is a buffer that a command's goroutines may write while the
// test reads it.
type SyncBuffer = proctest.SyncBuffer
