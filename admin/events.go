package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// The dashboard's test events page: an administrator publishes an event to a feed
// to see it arrive on the tablets.

type eventsBody struct {
	Form   eventForm
	Feeds  []string
	Result *broker.PublishResult
	Failed string
}

type eventForm struct{ Feed, Kind, Data, ID string }

func (d *dashboard) eventsPage(w http.ResponseWriter, r *http.Request, s adminSession) {
	d.renderEvents(w, http.StatusOK, d.base(s, "Test events", "events"), eventsBody{Form: eventForm{Kind: broker.KindState, Data: "{}"}})
}

func (d *dashboard) renderEvents(w http.ResponseWriter, status int, v view, body eventsBody) {
	body.Feeds = d.feeds()
	v.Body = body
	d.render(w, status, "events", v)
}

func (d *dashboard) sendEvent(w http.ResponseWriter, r *http.Request, s adminSession) {
	a := d.a
	form := eventForm{
		Feed: strings.TrimSpace(r.PostForm.Get("feed")), Kind: r.PostForm.Get("kind"),
		Data: r.PostForm.Get("data"), ID: strings.TrimSpace(r.PostForm.Get("id")),
	}
	v := d.base(s, "Test events", "events")
	res, err := a.b.Publish(r.Context(), form.Feed, broker.EventInput{ID: form.ID, Kind: form.Kind, Data: json.RawMessage(form.Data)})
	if err != nil {
		var e *httpx.Error
		if !errors.As(err, &e) {
			a.log.Warn("test event", slog.String("feed", form.Feed), slog.String("error", err.Error()))
			e = broker.ErrUnavailable
		}
		d.renderEvents(w, httpx.Status(e.Code), v, eventsBody{Form: form, Failed: e.Message})
		return
	}
	remote := a.addr.Of(r)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditTestEventSent), Feed: form.Feed, RemoteAddr: remote, Detail: fmt.Sprintf("%s event %s, seq %d, from the dashboard", form.Kind, res.ID, res.Seq)})
	a.log.Info("test event sent", slog.String("feed", form.Feed), slog.Uint64("seq", res.Seq), slog.String("remote_addr", remote))
	form.ID = "" // the next send is a new event unless the admin means otherwise
	d.renderEvents(w, http.StatusOK, v, eventsBody{Form: form, Result: &res})
}
