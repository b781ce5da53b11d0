package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

const usage = `kioskfeed: a live feed for public wall tablets, with no credential on them.

Usage:
  kioskfeed serve [--demo] [config flags]   run everything (embedded NATS unless --nats-url)
  kioskfeed publish --feed F --kind K --data JSON|@file [--id ID] [--url URL]
                                            publish one event over HTTP (producer key in
                                            KIOSKFEED_PRODUCER_KEY or --key), or --nats
  kioskfeed admin <command>                 pair devices, revoke, audit, tokens, producer keys
                                            ("kioskfeed admin" lists the commands)
  kioskfeed alert --all|--feed F "MESSAGE" [--level L] [--expires 30m]
                                            an emergency override on every tablet of the
                                            feeds; --list, --clear ID ("alert --help")
  kioskfeed config check [config flags]     print the effective config and check it
  kioskfeed healthcheck [--url URL]         exit 0 if this instance's /readyz answers 200
                                            (the container's HEALTHCHECK)
  kioskfeed display --server URL [--state-dir DIR] [--name NAME] [--pin FEED:PIN]
                                            a terminal display: pair (shows a code for an
                                            admin to approve) and print the feed live
  kioskfeed loadtest [--tablets N] [--json]  measure a local server with N tablets, side by
                                            side with nats-server's WebSocket listener
  kioskfeed version [--json]                print the version, commit and Go of this build
                                            (also --version)

Config comes from defaults, then a YAML file (--config or KIOSKFEED_CONFIG), then
KIOSKFEED_* environment variables, then flags. "kioskfeed serve --help" lists them.
`

// usageError is a mistake in the command line: exit code 2 and, when msg is empty,
// nothing more to print (the flag package has said it).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// run is the whole program behind main, so that tests drive it end to end with their
// own arguments, environment and output.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{}
	}
	err := dispatch(ctx, args, lookupEnv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag package printed the help asked for
	}
	return err
}

func dispatch(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, lookupEnv, stdout, stderr)
	case "publish":
		return publishCmd(ctx, rest, lookupEnv, stdout, stderr)
	case "admin":
		return adminCmd(ctx, rest, lookupEnv, stdout, stderr)
	case "alert":
		return alertCmd(ctx, rest, lookupEnv, stdout, stderr)
	case "display":
		return displayCmd(ctx, rest, stdout, stderr)
	case "loadtest":
		return loadtestCmd(ctx, rest, stdout, stderr)
	case "healthcheck":
		return healthcheckCmd(ctx, rest, lookupEnv, stdout, stderr)
	case "config":
		if len(rest) == 0 || rest[0] != "check" {
			return usageError{"usage: kioskfeed config check [config flags]"}
		}
		return configCheck(rest[1:], lookupEnv, stdout, stderr)
	case "version", "--version", "-version":
		return versionCmd(rest, stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}
