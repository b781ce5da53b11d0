package broker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow calls fn for every event of feed stored after seq after, in order, until stop
// is called: one ordered consumer, for one feed's live fan-out on this instance (never
// one per tablet). fn runs on the consumer's goroutine, one event at a time. Across a
// NATS reconnect the ordered consumer resumes after the last event it delivered, so
// nothing is skipped or repeated.
func (b *Broker) Follow(feed string, after uint64, fn func(Event)) (stop func(), err error) {
	ctx, cancel := b.opCtx(context.Background())
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, StreamFeeds, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{FeedSubjects(feed)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
	})
	if err != nil {
		return nil, b.unavailable("follow feed", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			return
		}
		if ev, ok := b.decode(msg.Subject(), msg.Headers().Get(jetstream.MsgIDHeader), msg.Data(), md.Sequence.Stream, md.Timestamp); ok {
			fn(ev)
		}
	},
		// A consumer whose server died is noticed after two missed heartbeats and
		// recreated after the last event it delivered. The default (5 s) left tablets
		// without events for ~10 s after a stream leader died; 1 s costs one small
		// message per second per feed and instance.
		jetstream.PullHeartbeat(time.Second), jetstream.PullExpiry(10*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.log.Debug("feed consumer", slog.String("feed", feed), slog.String("error", err.Error()))
		}))
	if err != nil {
		return nil, b.unavailable("follow feed", fmt.Errorf("consume: %w", err))
	}
	return cc.Stop, nil
}
