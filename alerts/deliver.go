package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Durable consumer names, shared by every instance: JetStream hands each message to
// one of them, so each alert is fanned out once and each delivery attempted by one
// instance at a time, cluster-wide.
const (
	fanoutConsumer   = "kioskfeed-webhook-fanout"
	deliveryConsumer = "kioskfeed-webhook-delivery"
)

// Headers of a delivery (docs/protocol.md §12, #webhook-delivery).
const (
	HeaderDelivery  = "X-Kioskfeed-Delivery"
	HeaderSignature = "X-Kioskfeed-Signature-256"
	// headerWebhook names a task's webhook inside WEBHOOK_TASKS (never sent out).
	headerWebhook = "Kioskfeed-Webhook"
)

// deliveryWorkers bounds the attempts in flight on one instance.
const deliveryWorkers = 8

// maxAnswerBytes is how much of a receiver's answer is read (and dropped).
const maxAnswerBytes = 4 << 10

type deliverer struct {
	s      *Service
	client *http.Client
	fanout jetstream.ConsumeContext
	tasks  jetstream.ConsumeContext
	slots  chan struct{}
	wg     sync.WaitGroup
	ctx    context.Context // ends at stop: cuts off attempts in flight
	cancel context.CancelFunc
	once   sync.Once
}

func newDeliverer(ctx context.Context, s *Service) (*deliverer, error) {
	_, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamTasks,
		Description: "kioskfeed webhook deliveries not yet done: one per alert and webhook",
		Subjects:    []string{taskPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      TasksMaxAge,
		MaxMsgs:     TasksMaxMsgs,
		MaxMsgSize:  maxAlertBytes + 1024,
		Duplicates:  DuplicateWindow,
		Replicas:    s.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("set up stream %s: %w", StreamTasks, err)
	}
	fan, err := s.js.CreateOrUpdateConsumer(ctx, StreamAlerts, jetstream.ConsumerConfig{
		Durable:       fanoutConsumer,
		Description:   "fans each alert out to the webhooks that want it",
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("set up consumer %s: %w", fanoutConsumer, err)
	}
	task, err := s.js.CreateOrUpdateConsumer(ctx, StreamTasks, jetstream.ConsumerConfig{
		Durable:       deliveryConsumer,
		Description:   "delivers each task to its webhook, with retries",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Longer than one attempt, so that a slow receiver's attempt is not handed to
		// another instance while it runs; a crashed instance's attempt comes back then.
		AckWait:       s.cfg.DeliveryTimeout + 20*time.Second,
		MaxDeliver:    s.cfg.MaxAttempts + 2, // a backstop: the handler ends the task at MaxAttempts
		MaxAckPending: 256,
	})
	if err != nil {
		return nil, fmt.Errorf("set up consumer %s: %w", deliveryConsumer, err)
	}
	d := &deliverer{s: s, client: newHTTPClient(s.cfg.DeliveryTimeout, s.cfg.AllowPrivate), slots: make(chan struct{}, deliveryWorkers)}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if d.fanout, err = fan.Consume(d.onAlert); err != nil {
		return nil, err
	}
	if d.tasks, err = task.Consume(d.onTask, jetstream.PullMaxMessages(deliveryWorkers)); err != nil {
		d.fanout.Stop()
		return nil, err
	}
	return d, nil
}

// stop cuts off the attempts in flight, ends both consumers and waits for them.
// Idempotent.
func (d *deliverer) stop() {
	d.once.Do(func() {
		d.cancel() // first: it frees a callback waiting for a slot
		d.fanout.Stop()
		d.tasks.Stop()
		<-d.fanout.Closed()
		<-d.tasks.Closed()
		d.wg.Wait()
		d.client.CloseIdleConnections()
	})
}

// onAlert queues one task per webhook that wants the alert, each with a Nats-Msg-Id
// of alert and webhook, so that a repeat (a redelivered alert) queues nothing twice.
func (d *deliverer) onAlert(msg jetstream.Msg) {
	var a Alert
	if json.Unmarshal(msg.Data(), &a) != nil || a.ID == "" {
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, 2*d.s.cfg.OpTimeout)
	defer cancel()
	for _, w := range d.s.hooks.matching(a.Type) {
		task := nats.NewMsg(taskPrefix + w.ID)
		task.Data = msg.Data()
		task.Header.Set(headerWebhook, w.ID)
		task.Header.Set(jetstream.MsgIDHeader, deliveryID(a.ID, w.ID))
		if _, err := d.s.js.PublishMsg(ctx, task); err != nil {
			d.s.log.Warn("webhook delivery not queued", slog.String("alert", a.ID), slog.String("webhook", w.ID), slog.String("error", err.Error()))
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	_ = msg.Ack()
}

// deliveryID is the X-Kioskfeed-Delivery of an alert's delivery to a webhook: the same
// on every attempt, on every instance, and for a repeat of the alert.
func deliveryID(alert, webhook string) string { return alert + "." + webhook }

// onTask takes a slot and attempts the delivery in a goroutine of its own, so that one
// slow receiver does not hold up the others.
func (d *deliverer) onTask(msg jetstream.Msg) {
	select {
	case d.slots <- struct{}{}:
	case <-d.ctx.Done():
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer func() { <-d.slots }()
		d.attempt(msg)
	}()
}

func (d *deliverer) attempt(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	attempt := int(meta.NumDelivered)
	id := msg.Headers().Get(headerWebhook)
	var a Alert
	_ = json.Unmarshal(msg.Data(), &a)
	w, ok := d.s.hooks.get(id)
	if !ok {
		_ = msg.Term() // deleted: nothing to deliver to
		return
	}
	rec := Delivery{Time: d.s.cfg.Now().UTC(), DeliveryID: deliveryID(a.ID, id), AlertID: a.ID, AlertType: a.Type, Attempt: attempt}
	rec.Status, err = d.post(w, msg.Data(), rec.DeliveryID)
	switch {
	case err == nil:
		rec.Outcome = "delivered"
		_ = msg.Ack()
	case d.ctx.Err() != nil:
		_ = msg.Nak() // cut off by shutdown: another instance, or this one restarted, tries again
		return
	case attempt >= d.s.cfg.MaxAttempts:
		rec.Outcome, rec.Error = "failed", err.Error()
		_ = msg.Term()
		d.s.log.Warn("webhook delivery failed", slog.String("webhook", id), slog.String("delivery_id", rec.DeliveryID),
			slog.Int("attempts", attempt), slog.String("error", rec.Error))
	default:
		rec.Outcome, rec.Error = "retrying", err.Error()
		_ = msg.NakWithDelay(d.backoff(attempt))
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.s.cfg.OpTimeout)
	defer cancel()
	d.s.hooks.record(ctx, id, rec)
}

// backoff is the delay before attempt n+1: RetryBase doubled n-1 times, at most RetryMax.
func (d *deliverer) backoff(n int) time.Duration {
	delay := d.s.cfg.RetryBase
	for i := 1; i < n && delay < d.s.cfg.RetryMax; i++ {
		delay *= 2
	}
	return min(delay, d.s.cfg.RetryMax)
}

// Sign is the X-Kioskfeed-Signature-256 of body under secret: "sha256=" and the hex
// HMAC-SHA256, as GitHub signs its webhooks. Receivers compute the same over the raw
// body and compare in constant time.
func Sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// post sends one attempt and returns the receiver's status; any answer but 2xx is an
// error. The error never holds the URL.
func (d *deliverer) post(w stored, body []byte, delivery string) (int, error) {
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("the URL cannot be requested")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kioskfeed-webhook/1")
	req.Header.Set(HeaderDelivery, delivery)
	req.Header.Set(HeaderSignature, Sign(body, w.Secret))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, errors.New(describe(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, fmt.Errorf("answered %d: redirects are not followed", resp.StatusCode)
	default:
		return resp.StatusCode, fmt.Errorf("answered %d", resp.StatusCode)
	}
}

// describe says why a request failed without the URL that *url.Error wraps around it
// (it may carry the receiver's token).
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, ErrRefusedAddress) {
		return "refused: " + strings.TrimPrefix(err.Error(), "dial tcp ")
	}
	var to interface{ Timeout() bool }
	if errors.As(err, &to) && to.Timeout() {
		return "timed out"
	}
	return truncate(err.Error(), 200)
}
