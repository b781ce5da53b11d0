package admin

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// The dashboard's producer keys page: broker keeps the keys, the dashboard lists,
// creates and deletes them.

type producersBody struct {
	Keys    []broker.ProducerKey
	Created *createdKey
	Form    producerForm
}

type createdKey struct {
	broker.ProducerKey
	Key string
}

type producerForm struct{ Name, Feeds string }

func (d *dashboard) producersPage(w http.ResponseWriter, r *http.Request, s adminSession) {
	v := d.base(s, "Producer keys", "producers")
	v.Notice = notices[r.URL.Query().Get("notice")]
	d.renderProducers(w, http.StatusOK, v, nil, producerForm{})
}

func (d *dashboard) renderProducers(w http.ResponseWriter, status int, v view, created *createdKey, form producerForm) {
	keys := d.a.b.ProducerKeys()
	slices.SortFunc(keys, func(x, y broker.ProducerKey) int { return x.Created.Compare(y.Created) })
	v.Body = producersBody{Keys: keys, Created: created, Form: form}
	d.render(w, status, "producers", v)
}

func (d *dashboard) createProducer(w http.ResponseWriter, r *http.Request, s adminSession) {
	a := d.a
	form := producerForm{Name: r.PostForm.Get("name"), Feeds: r.PostForm.Get("feeds")}
	var feeds []string
	for f := range strings.SplitSeq(form.Feeds, ",") {
		if f = strings.TrimSpace(f); f != "" {
			feeds = append(feeds, f)
		}
	}
	rec, key, err := a.b.CreateProducerKey(r.Context(), form.Name, feeds)
	v := d.base(s, "Producer keys", "producers")
	var e *httpx.Error
	if errors.As(err, &e) && e.Code == httpx.CodeInvalidRequest {
		v.Error = e.Message
		d.renderProducers(w, http.StatusBadRequest, v, nil, form)
		return
	}
	if err != nil {
		d.fail(w, err)
		return
	}
	remote := a.addr.Of(r)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditProducerKeyCreated), RemoteAddr: remote,
		Detail: "key " + rec.ID + " (" + rec.Name + ") for " + strings.Join(rec.Feeds, ",")})
	a.log.Info("producer key created", slog.String("id", rec.ID), slog.String("name", rec.Name), slog.String("remote_addr", remote))
	d.renderProducers(w, http.StatusOK, v, &createdKey{ProducerKey: rec, Key: key}, producerForm{})
}

func (d *dashboard) deleteProducer(w http.ResponseWriter, r *http.Request, _ adminSession) {
	a := d.a
	id := r.PathValue("id")
	if !recordIDRe.MatchString(id) {
		d.errorPage(w, http.StatusNotFound, "No such key", "There is no producer key with that id.")
		return
	}
	if err := a.b.DeleteProducerKey(r.Context(), id); err != nil {
		d.fail(w, err)
		return
	}
	remote := a.addr.Of(r)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditProducerKeyDeleted), RemoteAddr: remote, Detail: "key " + id})
	a.log.Info("producer key deleted", slog.String("id", id), slog.String("remote_addr", remote))
	http.Redirect(w, r, "/admin/producers?notice=key_deleted", http.StatusSeeOther)
}
