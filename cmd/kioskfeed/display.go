package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kioskfeed/kioskfeed/client"
)

const (
	// displayDirName is the display's folder under the user's config dir.
	displayDirName = "kioskfeed-display"
	// displayKeyFile and displayStateFile are the device key and the replay state in it.
	displayKeyFile   = "device.key"
	displayStateFile = "state.json"
	// maxDataShown is how much of an event's compact JSON one line shows.
	maxDataShown = 160
)

// errDisplayRevoked ends the display when the server no longer knows its device.
var errDisplayRevoked = errors.New("this display was revoked: it forgot its device and pairs again at the next start")

// displayCmd is a terminal display: a tablet that prints its feed, one line an event.
// It is built on the public client package alone, as any display would be, and is the
// proof that the package is enough to pair and show a feed.
func displayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kioskfeed display", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the kioskfeed server's public URL (required), e.g. https://feeds.example.org")
	stateDir := fs.String("state-dir", "", "where the device key and state are kept (default: "+displayDirName+" in the user's config dir)")
	name := fs.String("name", "", "the name administrators see for this display (default: the host name)")
	pin := fs.String("pin", "", "pair with an administrator's PIN, as FEED:PIN, instead of showing a code to approve")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if *server == "" || fs.NArg() > 0 {
		return usageError{"usage: kioskfeed display --server URL [--state-dir DIR] [--name NAME] [--pin FEED:PIN]"}
	}
	base := strings.TrimRight(*server, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return usageError{"--server must be an http:// or https:// URL"}
	}
	var pinFeed, pinCode string
	if *pin != "" {
		var ok bool
		if pinFeed, pinCode, ok = strings.Cut(*pin, ":"); !ok || pinFeed == "" || pinCode == "" {
			return usageError{"--pin must be FEED:PIN"}
		}
	}
	dir := *stateDir
	if dir == "" {
		conf, err := os.UserConfigDir()
		if err != nil {
			return fmt.Errorf("no config dir for the display's state (use --state-dir): %w", err)
		}
		dir = filepath.Join(conf, displayDirName)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if *name == "" {
		*name, _ = os.Hostname()
	}

	keyPath := filepath.Join(dir, displayKeyFile)
	key, err := client.LoadOrCreateKey(keyPath)
	if err != nil {
		return err
	}
	store := client.FileState{Path: filepath.Join(dir, displayStateFile)}
	st, err := store.Load()
	if err != nil {
		return err
	}
	dev := client.NewDevice(base, key)
	dev.UserAgent = "kioskfeed-display/" + version
	if st.DeviceID == "" {
		if err := pairDisplay(ctx, dev, *name, pinFeed, pinCode, stdout); err != nil {
			return err
		}
		c := dev.Credentials()
		if err := store.Save(client.State{DeviceID: c.DeviceID, Feed: c.Feed}); err != nil {
			return err
		}
	}

	v := &terminalView{out: stdout, clear: isTerminal(stdout)}
	c := &client.Client{
		Device: dev,
		State:  store,
		OnWelcome: func(w client.Welcome) {
			fmt.Fprintf(stdout, "connected: device %s, feed %s\n", w.DeviceID, w.Feed)
			if w.Schedule != nil {
				fmt.Fprintln(stdout, scheduleLine(w.Schedule, time.Now()))
			}
		},
		OnDisconnect: func(err error, retry time.Duration) {
			fmt.Fprintf(stderr, "disconnected (%v); reconnecting in %v\n", err, retry.Round(time.Millisecond))
		},
	}
	err = c.Run(ctx, v.show)
	switch {
	case ctx.Err() != nil:
		return nil // interrupted: the normal way out
	case errors.Is(err, client.ErrRevoked):
		fmt.Fprintln(stdout, "This display was revoked by an administrator.")
		if ferr := errors.Join(store.Forget(), os.Remove(keyPath)); ferr != nil {
			return fmt.Errorf("%w (forgetting it failed: %w)", errDisplayRevoked, ferr)
		}
		return errDisplayRevoked
	}
	return err
}

// pairDisplay pairs with a PIN when one was given, else by a code an administrator
// approves, printing what the administrator needs.
func pairDisplay(ctx context.Context, dev *client.Device, name, feed, pin string, stdout io.Writer) error {
	if pin != "" {
		if err := dev.PairWithPIN(ctx, feed, pin, name); err != nil {
			return fmt.Errorf("pair with the PIN: %w", err)
		}
		fmt.Fprintf(stdout, "paired with feed %s\n", dev.Credentials().Feed)
		return nil
	}
	req, err := dev.RequestPairing(ctx, name)
	if err != nil {
		return fmt.Errorf("ask for a pairing code: %w", err)
	}
	fmt.Fprintf(stdout, "To show a feed here, an administrator approves code %s\n", req.UserCode)
	fmt.Fprintf(stdout, "  at %s\n", req.VerificationURIComplete)
	fmt.Fprintf(stdout, "  (the code expires in %v; waiting...)\n", time.Duration(req.ExpiresIn)*time.Second)
	if err := dev.WaitApproved(ctx, req); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pairing by code: %w", err)
	}
	fmt.Fprintf(stdout, "approved: paired with feed %s\n", dev.Credentials().Feed)
	return nil
}

// terminalView prints the feed: a reset clears it (the screen too, on a terminal), then
// one line an event.
type terminalView struct {
	out   io.Writer
	clear bool
}

func (v *terminalView) show(m client.Message) error {
	var err error
	switch m.Type {
	case client.TypeReset:
		if v.clear {
			_, err = io.WriteString(v.out, "\x1b[H\x1b[2J")
		}
		if err == nil {
			_, err = fmt.Fprintln(v.out, "-- reset: the feed's current state follows --")
		}
	case client.TypeSynced:
		_, err = fmt.Fprintf(v.out, "-- live (seq %d) --\n", m.Seq)
	case client.TypeEvent:
		_, err = fmt.Fprintf(v.out, "%d %-5s %s %s\n", m.Seq, m.Kind, m.Time.UTC().Format(time.DateTime), compactData(m.Data))
	case client.TypeOverride:
		// Quoted: an override's text must not drive the terminal either.
		o := m.Override
		_, err = fmt.Fprintf(v.out, "!! %s %s: %s %s (until %s)\n", strings.ToUpper(o.Level), o.ID,
			strconv.Quote(o.Title), strconv.Quote(o.Body), o.ExpiresAt.UTC().Format(time.DateTime))
	case client.TypeOverrideClear:
		_, err = fmt.Fprintf(v.out, "!! ended %s\n", m.ID)
	case client.TypeSchedule:
		_, err = fmt.Fprintln(v.out, scheduleLine(m.Schedule, time.Now()))
	}
	return err
}

// compactData is an event's data as compact JSON, cut to maxDataShown bytes on a
// character boundary. JSON escapes every control character, so nothing in it can drive
// the terminal.
func compactData(data json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, data) != nil {
		return "(unreadable data)"
	}
	s := b.String()
	if len(s) <= maxDataShown {
		return s
	}
	cut := maxDataShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// isTerminal says whether w is a terminal, where a reset may clear the screen.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
