// Command kioskfeed is the whole system in one binary: `kioskfeed serve` runs the
// event broker (embedded NATS JetStream by default), the producer API and, as they land,
// the tablet bridge, pairing service and PWA. This package only wires packages
// together; the logic lives in them.
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
