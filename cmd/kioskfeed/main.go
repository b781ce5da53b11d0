// Command kioskfeed is the whole system in one binary: `kioskfeed serve` runs the
// event broker (embedded NATS JetStream by default), the producer API, pairing, the
// admin API and dashboard, the tablet bridge (GET /ws), the PWA, and the health and
// metrics endpoints. The other subcommands publish, administer, show a feed in a
// terminal (display) and load-test. This package only wires packages together; the
// logic lives in them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var u usageError
		if !errors.As(err, &u) || u.msg != "" {
			fmt.Fprintln(os.Stderr, "kioskfeed:", err)
		}
		os.Exit(exitCode(err))
	}
}
