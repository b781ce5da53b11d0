package broker

import (
	"context"
	"errors"
	"log/slog"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishResult is the answer of docs/protocol.md §8: the event's seq, its id, and whether
// it was a repeat of an id seen within the dedup window (then seq is the first one's).
type PublishResult struct {
	Seq       uint64 `json:"seq"`
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// Publish stores one checked event of feed in the log. An empty in.ID gets a server-made
// id; callers other than the HTTP API get the same checks. It returns only once
// JetStream has acknowledged the event, and ErrUnavailable when that cannot be known.
func (b *Broker) Publish(ctx context.Context, feed string, in EventInput) (PublishResult, error) {
	msg, id, err := EventMessage(feed, in, b.cfg.MaxEventBytes)
	if err != nil {
		return PublishResult{}, err
	}
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(StreamFeeds))
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return PublishResult{}, err
		}
		return PublishResult{}, b.unavailable("publish", err)
	}
	if ack.Duplicate {
		b.metrics.duplicates.Inc()
		b.log.Debug("duplicate event", slog.String("feed", feed), slog.String("id", id), slog.Uint64("seq", ack.Sequence))
	} else {
		b.metrics.published.Inc()
	}
	return PublishResult{Seq: ack.Sequence, ID: id, Duplicate: ack.Duplicate}, nil
}

// EventMessage checks an event and builds the NATS message that stores it, with the
// feed-scoped Nats-Msg-Id that de-duplicates it. It returns the event id (server-made
// when in.ID is empty). Producers written in Go may use it to publish over NATS exactly
// as the HTTP API does.
func EventMessage(feed string, in EventInput, maxDataBytes int) (*nats.Msg, string, error) {
	if !ValidFeedID(feed) {
		return nil, "", httpx.Errorf(httpx.CodeInvalidRequest, "feed id must match ^[a-z0-9][a-z0-9-]{0,62}$")
	}
	if !ValidKind(in.Kind) {
		return nil, "", httpx.Errorf(httpx.CodeInvalidRequest, `"kind" must be "state", "item" or "clear"`)
	}
	if in.ID == "" {
		in.ID = NewEventID()
	} else if !ValidEventID(in.ID) {
		return nil, "", httpx.Errorf(httpx.CodeInvalidRequest, `"id" must match ^[A-Za-z0-9._:-]{1,128}$`)
	}
	data, err := checkData(in.Data, in.Kind, maxDataBytes)
	if err != nil {
		return nil, "", err
	}
	msg := &nats.Msg{Subject: Subject(feed, in.Kind), Data: encodeStored(in.Kind, data), Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, msgIDFor(feed, in.ID))
	return msg, in.ID, nil
}
