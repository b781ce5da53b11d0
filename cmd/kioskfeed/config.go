package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/kioskfeed/kioskfeed/config"
)

// loadConfig parses a subcommand's arguments: config flags plus the command's own.
func loadConfig(name string, args []string, lookupEnv func(string) (string, bool), stderr io.Writer, extra func(*flag.FlagSet)) (config.Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("kioskfeed "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if extra != nil {
		extra(fs)
	}
	cfg, err := config.Load(fs, args, lookupEnv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, fs, flag.ErrHelp
		}
		return cfg, fs, err
	}
	if fs.NArg() > 0 {
		return cfg, fs, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return cfg, fs, nil
}

func configCheck(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	cfg, _, err := loadConfig("config check", args, lookupEnv, stderr, nil)
	if err != nil {
		return err
	}
	if err := cfg.WriteEffective(stdout); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid config:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	fmt.Fprintln(stdout, "# config is valid")
	return nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated already
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
