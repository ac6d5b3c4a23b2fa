package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/moqsframe/moqsframe/cmd/internal/cli"
	"github.com/moqsframe/moqsframe/sidecar"
)

const extractSynopsis = `usage: sframe-sidecar extract -in FILE [-track NAME] [-out FILE]

Writes one track of a decrypting sidecar's -out-file back out: its frames in
MoQ order (by group, then object), each once. An H.264 track becomes an
Annex-B stream that ffmpeg reads with -f h264.`

// ExtractConfig is what the extract subcommand's flags say.
type ExtractConfig struct {
	In, Track, Out string
}

func parseExtractFlags(args []string, getenv func(string) string) (ExtractConfig, error) {
	var c ExtractConfig
	fs := flag.NewFlagSet("sframe-sidecar extract", flag.ContinueOnError)
	fs.StringVar(&c.In, "in", "", "record file written by sframe-sidecar -mode decrypt -out-file")
	fs.StringVar(&c.Track, "track", "video", "track to extract")
	fs.StringVar(&c.Out, "out", "-", "output file (- for standard output)")
	if _, err := cli.Parse(fs, args, envPrefix+"EXTRACT_", extractSynopsis, getenv); err != nil {
		return c, err
	}
	if c.In == "" {
		return c, errors.New("-in is required: the record file to read")
	}
	return c, nil
}

func runExtract(_ context.Context, c ExtractConfig, stdout, stderr io.Writer) error {
	in, err := os.Open(c.In)
	if err != nil {
		return fmt.Errorf("-in: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("-in: %w", err)
	}
	out := stdout
	var f *os.File
	if c.Out != "-" {
		if f, err = os.Create(c.Out); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
		out = f
	}
	st, err := sidecar.Extract(in, fi.Size(), c.Track, out)
	if f != nil {
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c.In, err)
	}
	if st.Objects == 0 {
		return fmt.Errorf("%s: no objects of track %q", c.In, c.Track)
	}
	fmt.Fprintf(stderr, "%d objects (%d bytes) of track %q written; %d duplicates skipped\n", st.Objects, st.Bytes, c.Track, st.Duplicates)
	return nil
}
