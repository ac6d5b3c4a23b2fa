// Package cli is what the commands share: one style for flags (each also
// read from an environment variable), usage, log levels, exit codes and HTTP
// servers.
//
// A command has parseFlags(args, getenv) (Config, error), which returns a
// *Help for -h and an error naming the flag otherwise, and run(ctx, cfg,
// stdout, stderr) error; its main is Main(name, parseFlags, run).
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit codes.
const (
	ExitOK    = 0 // also for -h
	ExitError = 1 // run failed
	ExitUsage = 2 // bad flags or environment
)

// Help is returned by Parse for -h; it wraps flag.ErrHelp.
type Help struct{ Usage string }

func (h *Help) Error() string { return "help requested" }
func (h *Help) Unwrap() error { return flag.ErrHelp }

// EnvName is the environment variable of a flag: prefix followed by the
// flag name in upper case with - as _ (SFRAME_SIDECAR_KEY_FILE).
func EnvName(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args (without the program name) into fs, then sets every
// flag not on the command line from its environment variable (getenv; an
// empty value counts as unset): a flag wins over its variable, a variable
// over the default. It returns the names of the flags set either way. For
// -h it returns a *Help with synopsis and the flags, each with its
// variable. Nothing is printed.
func Parse(fs *flag.FlagSet, args []string, prefix, synopsis string, getenv func(string) string) (map[string]bool, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " [$" + EnvName(prefix, f.Name) + "]" })
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &Help{Usage: usage(fs, synopsis)}
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(prefix, f.Name)
		v := getenv(env)
		if err != nil || set[f.Name] || v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("bad $%s %q: %v", env, v, serr)
			return
		}
		set[f.Name] = true
	})
	return set, err
}

func usage(fs *flag.FlagSet, synopsis string) string {
	var b bytes.Buffer
	b.WriteString(strings.TrimRight(synopsis, "\n"))
	b.WriteString("\n\nFlags (each also read from the environment variable in brackets; a flag wins over its variable):\n")
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return b.String()
}

// ParseLevel parses a -log-level value.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		_ = l.UnmarshalText([]byte(s))
		return l, nil
	}
	return l, fmt.Errorf("bad -log-level %q: want debug, info, warn or error", s)
}

// NewLogger logs text to w (the command's stderr) from level up.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Main is a command's main: it parses os.Args and the environment, runs
// until SIGINT or SIGTERM and exits with the code of Exit.
func Main[C any](name string, parse func([]string, func(string) string) (C, error), run func(context.Context, C, io.Writer, io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := Exit(ctx, name, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, parse, run)
	stop()
	os.Exit(code)
}

// Exit parses, runs and returns the exit code: 0 after -h (usage on
// stdout) or a clean run, 2 for bad flags or environment (one line on
// stderr saying what to do), 1 if run failed (its error on stderr).
func Exit[C any](ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer,
	parse func([]string, func(string) string) (C, error), run func(context.Context, C, io.Writer, io.Writer) error) int {
	cfg, err := parse(args, getenv)
	var h *Help
	if errors.As(err, &h) {
		fmt.Fprint(stdout, h.Usage)
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v (%s -h lists the flags)\n", name, err, name)
		return ExitUsage
	}
	if err := run(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitError
	}
	return ExitOK
}

// Server timeouts of the commands' HTTP servers.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
	ShutdownTimeout   = 5 * time.Second
)

// NewServer is an http.Server for h with the timeouts above, logging its
// errors to log at warn level.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve serves h on ln (plain HTTP) until stop, which shuts the server
// down gracefully (waiting up to ShutdownTimeout for requests in flight) and
// returns once it has stopped.
func Serve(ln net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	srv := NewServer(h, log)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server failed", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("HTTP server shutdown", "addr", ln.Addr().String(), "err", err)
		}
		<-done
	}
}
