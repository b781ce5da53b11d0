package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
)

// The flags every command that speaks the admin API shares (kioskfeed admin, kioskfeed
// alert), and their parsing.

// newAdminClient adds --url, --token and --json to fs, with their environment defaults,
// and returns the client they fill in once fs is parsed.
func newAdminClient(fs *flag.FlagSet, lookupEnv func(string) (string, bool), stdout io.Writer) *adminClient {
	envOr := func(k, def string) string {
		if v, ok := lookupEnv(k); ok && v != "" {
			return v
		}
		return def
	}
	c := &adminClient{stdout: stdout}
	fs.StringVar(&c.base, "url", envOr("KIOSKFEED_PUBLIC_URL", "http://localhost:8080"), "kioskfeed's URL")
	fs.StringVar(&c.token, "token", envOr("KIOSKFEED_ADMIN_TOKEN", ""), "admin token")
	fs.BoolVar(&c.json, "json", false, "print the API's JSON answer as received, one document a line; a refusal's error document too")
	return c
}

// parseInterspersed parses args with fs, flags also after the arguments (approve CODE
// --feed lobby, alert "Fire" --all), and returns the arguments. A bad flag is a
// usageError; -h is flag.ErrHelp.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

// printJSONLine prints one JSON document as received, on one line (json.Compact keeps
// every field and value and drops only the whitespace between them), so that a script
// reads one document per line whatever the server's formatting: what --json prints.
func printJSONLine(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return fmt.Errorf("unreadable answer: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
