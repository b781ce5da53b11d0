package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// followInitialWait bounds how long a follower waits for a bucket's stored values.
const followInitialWait = 10 * time.Second

// followBucket watches every key of kv on a goroutine of its own, counted in done, until
// life ends: put gets each stored value and del each deleted or purged key, in the
// bucket's order, on that one goroutine. It returns once the values stored before the
// call have all come, so the caller starts with the whole bucket; or an error after
// followInitialWait or when ctx ends, after which the caller ends life and waits on done.
// The overrides and the schedules are kept this way (a Mirror does not hand over the
// revision order a deleted schedule needs).
func (b *Broker) followBucket(ctx, life context.Context, kv jetstream.KeyValue, what string, done *sync.WaitGroup,
	put func(jetstream.KeyValueEntry), del func(jetstream.KeyValueEntry)) error {
	w, err := kv.WatchAll(life)
	if err != nil {
		return b.unavailable("watch "+what, err)
	}
	initial := make(chan struct{})
	done.Add(1)
	go func() {
		defer done.Done()
		defer func() { _ = w.Stop() }()
		for e := range w.Updates() {
			switch {
			case e == nil: // the end of what was stored before the watch
				close(initial)
			case e.Operation() == jetstream.KeyValuePut:
				put(e)
			default:
				del(e)
			}
		}
	}()
	select {
	case <-initial:
		return nil
	case <-time.After(followInitialWait):
		return fmt.Errorf("%s: the stored %s did not arrive within %v", what, what, followInitialWait)
	case <-ctx.Done():
		return errors.Join(fmt.Errorf("%s: waiting for the stored %s", what, what), ctx.Err())
	}
}
