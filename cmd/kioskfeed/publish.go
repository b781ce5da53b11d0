package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
)

// publishCmd sends one event, as a producer would: over HTTP with a producer key, or
// over NATS with --nats. It prints the answer as JSON: by default the fields it knows
// (id, seq, duplicate...), with --json the API's answer as received, on one line, and
// the API's error document too when it refuses (over NATS, where there is no API
// answer, the same fields as the API's, from the JetStream acknowledgement).
func publishCmd(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kioskfeed publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envOr := func(k, def string) string {
		if v, ok := lookupEnv(k); ok {
			return v
		}
		return def
	}
	feed := fs.String("feed", "", "feed id (required)")
	kind := fs.String("kind", "", "state, item or clear (required)")
	data := fs.String("data", "", "event data: a JSON object, or @file to read it from a file")
	id := fs.String("id", "", "event id for de-duplication (default: made by the server)")
	base := fs.String("url", envOr("KIOSKFEED_PUBLIC_URL", "http://localhost:8080"), "kioskfeed URL (env KIOSKFEED_PUBLIC_URL)")
	key := fs.String("key", "", "producer key (default: env KIOSKFEED_PRODUCER_KEY)")
	overNATS := fs.Bool("nats", false, "publish over NATS instead of HTTP")
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS URL for --nats (user:password@ may be in it)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer as received, one line; a refusal's error document too (on stdout, besides the message on stderr)")
	dataDir := fs.String("data-dir", envOr("KIOSKFEED_DATA_DIR", "./data"), "with --nats and no password in --nats-url: read the embedded server's producer password from here")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if *feed == "" || *kind == "" {
		return usageError{"--feed and --kind are required"}
	}
	raw := []byte(*data)
	if name, ok := strings.CutPrefix(*data, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("read --data file: %w", err)
		}
		raw = b
	}
	in := broker.EventInput{ID: *id, Kind: *kind, Data: json.RawMessage(raw)}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()

	var res broker.PublishResult
	var answer []byte
	var err error
	if *overNATS {
		res, err = publishNATS(ctx, *natsURL, *dataDir, *feed, in)
	} else {
		if *key == "" {
			*key, _ = lookupEnv("KIOSKFEED_PRODUCER_KEY")
		}
		res, answer, err = publishHTTP(ctx, *base, *key, *feed, in)
	}
	if *asJSON && len(answer) > 0 {
		if perr := printJSONLine(stdout, answer); err == nil {
			err = perr
		}
		return err
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// publishHTTP posts in and returns the answer, and its body as received (the error
// document of a refusal; nil when no answer came).
func publishHTTP(ctx context.Context, base, key, feed string, in broker.EventInput) (broker.PublishResult, []byte, error) {
	if key == "" {
		return broker.PublishResult{}, nil, usageError{"a producer key is needed: --key or KIOSKFEED_PRODUCER_KEY (an admin makes one with POST /api/admin/producer-keys)"}
	}
	body, err := json.Marshal(in)
	if err != nil {
		return broker.PublishResult{}, nil, fmt.Errorf("--data is not a JSON object: %w", err)
	}
	u := strings.TrimRight(base, "/") + "/api/feeds/" + url.PathEscape(feed) + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return broker.PublishResult{}, nil, fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return broker.PublishResult{}, nil, fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		var e struct{ Error, Message string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return broker.PublishResult{}, raw, fmt.Errorf("publish refused (%d %s): %s", resp.StatusCode, e.Error, e.Message)
		}
		return broker.PublishResult{}, nil, fmt.Errorf("publish refused: HTTP %d", resp.StatusCode)
	}
	var res broker.PublishResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return res, raw, fmt.Errorf("publish: unreadable answer: %w", err)
	}
	return res, raw, nil
}

// publishConnectTimeout bounds "kioskfeed publish --nats"'s connection to NATS.
const publishConnectTimeout = 10 * time.Second

func publishNATS(ctx context.Context, natsURL, dataDir, feed string, in broker.EventInput) (broker.PublishResult, error) {
	// The same checks and the same feed-scoped de-duplication id as the HTTP API.
	msg, id, err := broker.EventMessage(feed, in, 1<<20)
	if err != nil {
		return broker.PublishResult{}, err
	}
	// nats.go's default connect timeout is 2 s, for the TCP dial and the INFO/CONNECT
	// exchange together: a busy server, or a cluster across a slow link, can take longer,
	// and a one-shot command has no reconnect to fall back on. The command's own
	// deadline (15 s) still bounds it.
	opts := []nats.Option{nats.Name("kioskfeed publish"), nats.Timeout(publishConnectTimeout)}
	if u, err := url.Parse(natsURL); err == nil && u.User == nil {
		if pw, err := os.ReadFile(filepath.Join(dataDir, broker.ProducerPasswordFile)); err == nil {
			opts = append(opts, nats.UserInfo("producer", strings.TrimSpace(string(pw))))
		}
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return broker.PublishResult{}, fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return broker.PublishResult{}, err
	}
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return broker.PublishResult{}, fmt.Errorf("publish over NATS: %w", err)
	}
	return broker.PublishResult{Seq: ack.Sequence, ID: id, Duplicate: ack.Duplicate}, nil
}
