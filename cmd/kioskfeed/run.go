package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
)

const usage = `kioskfeed: a live feed for public wall tablets, with no credential on them.

Usage:
  kioskfeed serve [--demo] [config flags]   run everything (embedded NATS unless --nats-url)
  kioskfeed publish --feed F --kind K --data JSON|@file [--id ID] [--url URL] [--json]
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
  kioskfeed completion bash|zsh|fish        print a shell completion script (README: "Shell
                                            completion" says where to put it)
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

// cmdFunc is what every subcommand is: its arguments after its name, the environment,
// and where to print.
type cmdFunc func(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error

// subcommand is one entry of the command table: dispatch runs it, and the shell
// completion (completion.go) offers its name, its words (the subcommands it takes
// first, such as admin's) and the flags its --help lists, so a new entry is completed
// without editing a script.
type subcommand struct {
	name    string
	aliases []string
	run     cmdFunc
	words   func() []string // its own subcommands, "token create" for a second level; nil: none
	hidden  bool            // not offered by completion (help's aliases)
}

// subcommands is the command table.
func subcommands() []subcommand {
	noEnv := func(f func(context.Context, []string, io.Writer, io.Writer) error) cmdFunc {
		return func(ctx context.Context, args []string, _ func(string) (string, bool), stdout, stderr io.Writer) error {
			return f(ctx, args, stdout, stderr)
		}
	}
	return []subcommand{
		{name: "serve", run: serve},
		{name: "publish", run: publishCmd},
		{name: "admin", run: adminCmd, words: adminCommands},
		{name: "alert", run: alertCmd},
		{name: "display", run: noEnv(displayCmd)},
		{name: "loadtest", run: noEnv(loadtestCmd), words: func() []string { return []string{"plot"} }},
		{name: "healthcheck", run: healthcheckCmd},
		{name: "config", run: func(_ context.Context, rest []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
			if len(rest) == 0 || rest[0] != "check" {
				return usageError{"usage: kioskfeed config check [config flags]"}
			}
			return configCheck(rest[1:], lookupEnv, stdout, stderr)
		}, words: func() []string { return []string{"check"} }},
		{name: "completion", run: completionCmd},
		{name: "version", aliases: []string{"--version", "-version"}, run: func(_ context.Context, rest []string, _ func(string) (string, bool), stdout, stderr io.Writer) error {
			return versionCmd(rest, stdout, stderr)
		}},
		{name: "help", aliases: []string{"-h", "--help", "-help"}, hidden: true, run: func(_ context.Context, _ []string, _ func(string) (string, bool), stdout, _ io.Writer) error {
			fmt.Fprint(stdout, usage)
			return nil
		}},
	}
}

func dispatch(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	cmd, rest := args[0], args[1:]
	for _, sc := range subcommands() {
		if sc.name == cmd || slices.Contains(sc.aliases, cmd) {
			return sc.run(ctx, rest, lookupEnv, stdout, stderr)
		}
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}
