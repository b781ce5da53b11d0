package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kioskfeed/kioskfeed/loadtest"
)

// loadtestPlotCmd is "kioskfeed loadtest plot [-o FILE.png] [--title T] RESULT.json...":
// the results of several load runs drawn as one PNG (loadtest.Plot). Flags may come
// before or after the files. The PNG is written whole or not at all.
func loadtestPlotCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kioskfeed loadtest plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: kioskfeed loadtest plot [-o FILE.png] [--title TEXT] RESULT.json...

Draws the results of load runs (what "kioskfeed loadtest --json" prints, or the
result.json that --dir keeps; a directory stands for its result.json) as one PNG: fan-out
p99 and server RSS per tablet against the number of tablets, for kioskfeed, Centrifugo
and nats-server's WebSocket, the median of the runs at each N with their min-max as a
whisker. A peer a run skipped (--no-centrifugo, --no-nats) is absent at its N.

`)
		fs.PrintDefaults()
	}
	out := fs.String("o", "loadtest.png", "the PNG to write")
	title := fs.String("title", "", "the picture's title, e.g. the machine the runs were taken on")
	var files []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) == 0 {
		return usageError{"kioskfeed loadtest plot needs at least one result file (kioskfeed loadtest --json, or --dir's result.json)"}
	}
	var results []*loadtest.Result
	seen := map[string]bool{} // a run named twice (its directory and its file) counts once
	for _, f := range files {
		key, err := filepath.Abs(f)
		if err == nil {
			if fi, serr := os.Stat(key); serr == nil && fi.IsDir() {
				key = filepath.Join(key, "result.json")
			}
		}
		if err == nil && seen[key] {
			fmt.Fprintf(stderr, "loadtest plot: %s: named twice, counted once\n", f)
			continue
		}
		seen[key] = true
		r, err := loadtest.ReadResultFile(f)
		if err != nil {
			return fmt.Errorf("loadtest plot: %w", err)
		}
		results = append(results, r)
	}
	var png bytes.Buffer
	if err := loadtest.Plot(&png, results, loadtest.PlotOptions{Title: *title}); err != nil {
		return fmt.Errorf("loadtest plot: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".plot-*.png")
	if err != nil {
		return fmt.Errorf("loadtest plot: %w", err)
	}
	_, err = tmp.Write(png.Bytes())
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), *out)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("loadtest plot: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d runs\n", *out, len(results))
	return nil
}
