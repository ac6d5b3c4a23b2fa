package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

type config struct {
	Name  string
	Every time.Duration
	On    bool
}

func parse(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.StringVar(&c.Name, "name", "default", "a name")
	fs.DurationVar(&c.Every, "every", time.Second, "a period")
	fs.BoolVar(&c.On, "on", false, "a switch")
	_, err := Parse(fs, args, "T_", "usage: t [flags]", getenv)
	return c, err
}

func getenv(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}

func TestParse(t *testing.T) {
	c, err := parse(nil, getenv("T_NAME", "env", "T_EVERY", "2s", "T_ON", "true"))
	if err != nil || c != (config{"env", 2 * time.Second, true}) {
		t.Fatalf("env: %+v %v", c, err)
	}
	c, err = parse([]string{"-name", "flag", "-on=false"}, getenv("T_NAME", "env", "T_ON", "true"))
	if err != nil || c != (config{"flag", time.Second, false}) {
		t.Fatalf("flag over env: %+v %v", c, err)
	}
	if _, err := parse(nil, getenv("T_EVERY", "x")); err == nil || err.Error() != `bad $T_EVERY "x": parse error` {
		t.Fatalf("bad env: %v", err)
	}
	if _, err := parse([]string{"x"}, getenv()); err == nil || !strings.Contains(err.Error(), `unexpected argument "x"`) {
		t.Fatalf("stray argument: %v", err)
	}
	_, err = parse([]string{"-help"}, getenv())
	var h *Help
	if !errors.As(err, &h) || !errors.Is(err, flag.ErrHelp) || !strings.HasPrefix(h.Usage, "usage: t [flags]\n") ||
		!strings.Contains(h.Usage, "a period [$T_EVERY]") {
		t.Fatalf("-help: %v", err)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		if l, err := ParseLevel(in); err != nil || l != want {
			t.Errorf("%s: %v %v", in, l, err)
		}
	}
	for _, in := range []string{"", "loud", "info+2"} {
		if _, err := ParseLevel(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestExit(t *testing.T) {
	failing := func(context.Context, config, io.Writer, io.Writer) error { return errors.New("broken") }
	ok := func(_ context.Context, c config, stdout, _ io.Writer) error {
		_, err := io.WriteString(stdout, c.Name)
		return err
	}
	for _, tc := range []struct {
		args           []string
		run            func(context.Context, config, io.Writer, io.Writer) error
		code           int
		stdout, stderr string
	}{
		{[]string{"-name", "x"}, ok, ExitOK, "x", ""},
		{[]string{"-h"}, failing, ExitOK, "usage: t [flags]", ""},
		{[]string{"-every", "soon"}, ok, ExitUsage, "", `t: invalid value "soon" for flag -every: parse error (t -h lists the flags)` + "\n"},
		{nil, failing, ExitError, "", "t: broken\n"},
	} {
		var stdout, stderr strings.Builder
		code := Exit(context.Background(), "t", tc.args, getenv(), &stdout, &stderr, parse, tc.run)
		if code != tc.code || !strings.HasPrefix(stdout.String(), tc.stdout) || stderr.String() != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tc.args, code, stdout.String(), stderr.String())
		}
	}
}

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), slog.New(slog.DiscardHandler))
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	stop()
	stop() // harmless
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("still serving after stop")
	}
	srv := NewServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 {
		t.Fatalf("timeouts missing: %+v", srv)
	}
}
