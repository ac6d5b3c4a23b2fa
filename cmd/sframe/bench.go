package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
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
	fmt.Fprintln(tw, "suite\top\tsize\tbatch\tpath\tworkers\tns/object\tGB/s\tstdlib GB/s\tratio\tallocs/object\t")
	var rows []bench.Result
	err := bench.Run(opts, func(r bench.Result) {
		rows = append(rows, r)
		workers := "-"
		if r.Workers > 0 {
			workers = fmt.Sprint(r.Workers)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%.0f\t%.2f\t%.2f\t%.2fx\t%.2f\t\n",
			r.Suite, r.Op, r.Size, r.Batch, r.Path, workers, r.NsPerObject, r.GBps, r.StdlibGBps, r.Ratio, r.AllocsPerObject)
	})
	tw.Flush()
	if err == nil {
		printTargets(stdout, rows)
	}
	return err
}

// printTargets summarises the performance targets of the fastest path,
// each computed from rows of this run.
func printTargets(w io.Writer, rows []bench.Result) {
	best := func(op string, size, batch int) (r bench.Result, ok bool) {
		for _, x := range rows {
			if x.Suite == "AES_128_GCM_SHA256_128" && x.Op == op && x.Size == size && x.Batch == batch && x.Workers == 0 && x.GBps > r.GBps {
				r, ok = x, true
			}
		}
		return r, ok
	}
	fmt.Fprintln(w, "\ntargets (AES_128_GCM_SHA256_128 seal, best path, ratios from this run):")
	for _, t := range []struct {
		name        string
		size, batch int
		want        float64
	}{{"16384 B", 16384, 1, 2.0}, {"1200 B batch 32", 1200, 32, 2.0}, {"160 B batch 32", 160, 32, 2.5}} {
		if r, ok := best("seal", t.size, t.batch); ok {
			fmt.Fprintf(w, "  %-16s %.2fx stdlib (target %.1fx) %s [%s]\n", t.name, r.Ratio, t.want, verdict(r.Ratio >= t.want), r.Path)
		}
	}
	for _, batch := range []int{1, 32} {
		if s, ok := best("seal", 1200, batch); ok {
			for _, x := range rows {
				if x.Suite == s.Suite && x.Op == "aead-seal" && x.Path == s.Path && x.Batch == batch {
					over := s.NsPerObject/x.NsPerObject - 1
					fmt.Fprintf(w, "  SFrame overhead over the raw AEAD at 1200 B, batch %2d: %5.1f%% (target <= 5%%) %s [%s]\n",
						batch, 100*over, verdict(over <= 0.05), s.Path)
				}
			}
		}
	}
	speedup := func(op string) (float64, bool) {
		var one, two float64
		for _, x := range rows {
			if x.Op == op && x.Workers == 1 {
				one = x.NsPerObject
			}
			if x.Op == op && x.Workers == 2 {
				two = x.NsPerObject
			}
		}
		return one / two, one > 0 && two > 0
	}
	if s, ok := speedup("pipeline-seal"); ok {
		fmt.Fprintf(w, "  pipeline 2 workers vs 1: %.2fx (target >= 1.8x) %s\n", s, verdict(s >= 1.8))
	}
	if s, ok := speedup("parallel-seal"); ok {
		fmt.Fprintf(w, "    ceiling on this machine, 2 goroutines sealing vs 1 with no pipeline: %.2fx (%d CPUs)\n", s, runtime.NumCPU())
	}
	var maxAllocs float64
	for _, x := range rows {
		maxAllocs = max(maxAllocs, x.AllocsPerObject)
	}
	fmt.Fprintf(w, "  allocations per object, worst row: %.3f (target 0) %s\n", maxAllocs, verdict(maxAllocs < 0.01))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
