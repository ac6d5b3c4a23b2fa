package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/moqsframe/moqsframe/bench"
)

func benchCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	quick := fs.Bool("quick", false, "shorter rounds (less precise)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	opts := bench.DefaultOptions()
	if *quick {
		opts.MinTime, opts.Rounds = 10*time.Millisecond, 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return bench.Run(opts, func(r bench.Result) { enc.Encode(r) })
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "suite\top\tsize\tbatch\tpath\tns/object\tGB/s\tstdlib GB/s\tratio\tallocs/object\t")
	err := bench.Run(opts, func(r bench.Result) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%.0f\t%.2f\t%.2f\t%.2fx\t%.2f\t\n",
			r.Suite, r.Op, r.Size, r.Batch, r.Path, r.NsPerObject, r.GBps, r.StdlibGBps, r.Ratio, r.AllocsPerObject)
	})
	tw.Flush()
	return err
}
