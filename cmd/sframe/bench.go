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

// printTargets summarises the performance goals, each computed from rows
// of this run (ratios of code measured in this process), with met or NOT
// met.
func printTargets(w io.Writer, rows []bench.Result) {
	const gcm, ctr = "AES_128_GCM_SHA256_128", "AES_128_CTR_HMAC_SHA256_80"
	// best returns the fastest row of suite, op, size and batch over the
	// AES-GCM paths (stage rows excluded).
	best := func(suite, op string, size, batch int) (r bench.Result, ok bool) {
		for _, x := range rows {
			if x.Suite == suite && x.Op == op && x.Size == size && x.Batch == batch && x.Workers == 0 && x.GBps > r.GBps {
				r, ok = x, true
			}
		}
		return r, ok
	}
	// paired returns the row of op (a figure timed alternating with its
	// baseline in the same rounds) on the path of the fastest seal row of
	// suite, size and batch.
	paired := func(suite, op string, size, batch int) (bench.Result, bool) {
		s, ok := best(suite, "seal", size, batch)
		if !ok {
			return bench.Result{}, false
		}
		for _, x := range rows {
			if x.Suite == suite && x.Op == op && x.Size == size && x.Batch == batch && x.Path == s.Path {
				return x, true
			}
		}
		return bench.Result{}, false
	}
	fmt.Fprintln(w, "\ntargets (best path, ratios from this run):")
	for _, t := range []struct {
		name        string
		size, batch int
		want        float64
	}{{"16384 B", 16384, 1, 2.0}, {"1200 B batch 32", 1200, 32, 2.0}, {"160 B batch 32", 160, 32, 3.0}} {
		if r, ok := best(gcm, "seal", t.size, t.batch); ok {
			fmt.Fprintf(w, "  suite 4 seal %-16s %.2fx stdlib (target >= %.1fx) %s [%s]\n", t.name, r.Ratio, t.want, verdict(r.Ratio >= t.want), r.Path)
		}
	}
	for _, size := range []int{160, 1200, 16384} {
		o, ok1 := best(gcm, "open", size, 32)
		s, ok2 := best(gcm, "seal", size, 32)
		if ok1 && ok2 {
			fmt.Fprintf(w, "  suite 4 open %5d B batch 32: %.2fx stdlib open vs seal batch 32 %.2fx stdlib (target open >= seal) %s [%s]\n",
				size, o.Ratio, s.Ratio, verdict(o.Ratio >= s.Ratio), o.Path)
		}
	}
	for _, t := range []struct {
		batch int
		want  float64
	}{{1, 0.05}, {32, 0.10}} {
		if x, ok := paired(gcm, "sframe-vs-aead", 1200, t.batch); ok {
			over := 1/x.Ratio - 1
			fmt.Fprintf(w, "  SFrame overhead over the raw AEAD at 1200 B, batch %2d: %+5.1f%% (target <= %.0f%%) %s [%s]\n",
				t.batch, 100*over, 100*t.want, verdict(over <= t.want), x.Path)
		}
	}
	// CTR+HMAC: against the stdlib composition at 160 B, and against
	// SHA-256 alone over the same bytes at 1200 B and 16 KiB.
	if x, ok := paired(ctr, "seal-vs-ctr-hmac-stdlib", 160, 1); ok {
		fmt.Fprintf(w, "  suite 1 seal 160 B: %.2fx the crypto/aes CTR + crypto/hmac composition (target >= 2.0x) %s\n", x.Ratio, verdict(x.Ratio >= 2))
	}
	for _, size := range []int{1200, 16384} {
		if x, ok := paired(ctr, "seal-vs-sha256", size, 1); ok {
			fmt.Fprintf(w, "  suite 1 seal %5d B: %.0f%% of crypto/sha256's speed on the same bytes (target >= 85%%) %s\n", size, 100*x.Ratio, verdict(x.Ratio >= 0.85))
		}
	}
	fmt.Fprintln(w, "  suites 1-3 batches: 16-lane AVX-512 SHA-256 >= 1.5x SHA-NI at 1200 B: not built (this module has no AVX-512 SHA-256 kernel) NOT met")
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
		fmt.Fprintf(w, "  pipeline 2 workers vs 1 (producer included): %.2fx (target >= 1.8x) %s\n", s, verdict(s >= 1.8))
	}
	if s, ok := speedup("parallel-seal"); ok {
		fmt.Fprintf(w, "    ceiling on this machine, 2 goroutines sealing vs 1 with no pipeline: %.2fx (%d CPUs)\n", s, runtime.NumCPU())
	}
	var maxAllocs float64
	for _, x := range rows {
		if x.Path != "stdlib" { // baselines are what they are
			maxAllocs = max(maxAllocs, x.AllocsPerObject)
		}
	}
	fmt.Fprintf(w, "  allocations per object, worst row: %.3f (target 0) %s\n", maxAllocs, verdict(maxAllocs < 0.01))
	if bench.ThreadCPUTime {
		fmt.Fprintln(w, "  (single-goroutine rows: thread CPU time; pipeline and parallel rows: wall time)")
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
