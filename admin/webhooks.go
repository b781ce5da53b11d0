package admin

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// The webhooks of docs/protocol.md §12: the admin API (/api/admin/webhooks) and the
// dashboard page (/admin/webhooks). Package alerts keeps them and delivers to them;
// this file only checks who asks and audits what they did. Without Config.Webhooks
// neither is served.

// maxWebhookBody bounds a webhook's JSON body: a URL of at most 2 KiB, a few types and
// a secret.
const maxWebhookBody = 8 << 10

// webhookTarget is what an audit record or log line says of a webhook's URL: its
// scheme and host, never the path or query (which may carry the receiver's token).
func webhookTarget(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Scheme + "://" + u.Host
}

func (a *Admin) registerWebhooks(mux *http.ServeMux) {
	if a.cfg.Webhooks == nil {
		return
	}
	mux.Handle("POST /api/admin/webhooks", a.adminOnly(a.handleCreateWebhook))
	mux.Handle("GET /api/admin/webhooks", a.adminOnly(a.handleListWebhooks))
	mux.Handle("DELETE /api/admin/webhooks/{id}", a.adminOnly(a.handleDeleteWebhook))
	mux.Handle("GET /api/admin/webhooks/{id}/deliveries", a.adminOnly(a.handleWebhookDeliveries))
	d := a.dash
	page := func(h sessionHandler) http.Handler { return d.headers(d.withSession(h)) }
	form := func(h sessionHandler) http.Handler { return d.headers(d.cop.Handler(d.withSession(d.checkCSRF(h)))) }
	mux.Handle("GET /admin/webhooks", page(d.webhooksPage))
	mux.Handle("POST /admin/webhooks", form(d.createWebhook))
	mux.Handle("POST /admin/webhooks/{id}/delete", form(d.deleteWebhook))
}

// createWebhook makes a webhook and audits it; the secret is returned only when it was
// made here.
func (a *Admin) createWebhook(r *http.Request, req alerts.WebhookRequest) (alerts.Webhook, string, error) {
	w, secret, err := a.cfg.Webhooks.CreateWebhook(r.Context(), req)
	if err != nil {
		return w, "", err
	}
	remote := a.addr.Of(r)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditWebhookCreated), RemoteAddr: remote,
		Detail: "webhook " + w.ID + " to " + webhookTarget(w.URL)})
	a.log.Info("webhook created", slog.String("id", w.ID), slog.String("target", webhookTarget(w.URL)), slog.String("remote_addr", remote))
	return w, secret, nil
}

func (a *Admin) deleteWebhook(r *http.Request, id string) error {
	w, _ := a.cfg.Webhooks.Webhook(id)
	ok, err := a.cfg.Webhooks.DeleteWebhook(r.Context(), id)
	if err != nil {
		return err
	}
	if !ok {
		return httpx.Errorf(httpx.CodeNotFound, "no webhook with that id")
	}
	remote := a.addr.Of(r)
	a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditWebhookDeleted), RemoteAddr: remote,
		Detail: "webhook " + id + " to " + webhookTarget(w.URL)})
	a.log.Info("webhook deleted", slog.String("id", id), slog.String("remote_addr", remote))
	return nil
}

func (a *Admin) handleCreateWebhook(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadJSONBody(w, r, maxWebhookBody)
	if err != nil {
		return err
	}
	var req alerts.WebhookRequest
	if err := httpx.StrictJSON(body, &req); err != nil {
		return err
	}
	hook, secret, err := a.createWebhook(r, req)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, struct {
		alerts.Webhook
		Secret string `json:"secret,omitempty"`
	}{hook, secret})
	return nil
}

func (a *Admin) handleListWebhooks(w http.ResponseWriter, _ *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, a.cfg.Webhooks.Webhooks())
	return nil
}

func (a *Admin) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := a.deleteWebhook(r, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Admin) handleWebhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	list, ok, err := a.cfg.Webhooks.Deliveries(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if !ok {
		return httpx.Errorf(httpx.CodeNotFound, "no webhook with that id")
	}
	httpx.WriteJSON(w, http.StatusOK, list)
	return nil
}

// The dashboard page: every webhook with its newest deliveries, a form to make one and
// a button to delete each.

// dashboardDeliveries is how many of a webhook's attempts the page shows.
const dashboardDeliveries = 10

type webhookRow struct {
	alerts.Webhook
	Deliveries []alerts.Delivery
	Failed     int // attempts on the page that failed or will be retried
}

type webhooksBody struct {
	Hooks   []webhookRow
	Types   []string
	Form    webhookForm
	Created *createdWebhook
}

type webhookForm struct {
	URL   string
	Types []string
}

// Has reports whether the form had type t ticked, for the template.
func (f webhookForm) Has(t string) bool {
	for _, x := range f.Types {
		if x == t {
			return true
		}
	}
	return false
}

type createdWebhook struct {
	alerts.Webhook
	Secret string
}

func (d *dashboard) webhooksPage(w http.ResponseWriter, r *http.Request, s adminSession) {
	v := d.base(s, "Webhooks", "webhooks")
	v.Notice = notices[r.URL.Query().Get("notice")]
	d.renderWebhooks(w, r, http.StatusOK, v, nil, webhookForm{})
}

func (d *dashboard) renderWebhooks(w http.ResponseWriter, r *http.Request, status int, v view, created *createdWebhook, form webhookForm) {
	hooks := d.a.cfg.Webhooks
	var rows []webhookRow
	for _, h := range hooks.Webhooks() {
		list, _, err := hooks.Deliveries(r.Context(), h.ID)
		if err != nil {
			d.fail(w, err)
			return
		}
		row := webhookRow{Webhook: h, Deliveries: list[:min(len(list), dashboardDeliveries)]}
		for _, del := range row.Deliveries {
			if del.Outcome != "delivered" {
				row.Failed++
			}
		}
		rows = append(rows, row)
	}
	v.Body = webhooksBody{Hooks: rows, Types: alerts.Types(), Form: form, Created: created}
	d.render(w, status, "webhooks", v)
}

func (d *dashboard) createWebhook(w http.ResponseWriter, r *http.Request, s adminSession) {
	form := webhookForm{URL: strings.TrimSpace(r.PostForm.Get("url")), Types: r.PostForm["types"]}
	hook, secret, err := d.a.createWebhook(r, alerts.WebhookRequest{URL: form.URL, Types: form.Types, Secret: r.PostForm.Get("secret")})
	v := d.base(s, "Webhooks", "webhooks")
	var e *httpx.Error
	if errors.As(err, &e) && e.Code == httpx.CodeInvalidRequest {
		v.Error = e.Message
		d.renderWebhooks(w, r, http.StatusBadRequest, v, nil, form)
		return
	}
	if err != nil {
		d.fail(w, err)
		return
	}
	d.renderWebhooks(w, r, http.StatusOK, v, &createdWebhook{Webhook: hook, Secret: secret}, webhookForm{})
}

func (d *dashboard) deleteWebhook(w http.ResponseWriter, r *http.Request, _ adminSession) {
	err := d.a.deleteWebhook(r, r.PathValue("id"))
	var e *httpx.Error
	if errors.As(err, &e) && e.Code == httpx.CodeNotFound {
		d.errorPage(w, http.StatusNotFound, "No such webhook", "There is no webhook with that id; it may have been deleted already.")
		return
	}
	if err != nil {
		d.fail(w, err)
		return
	}
	http.Redirect(w, r, "/admin/webhooks?notice=webhook_deleted", http.StatusSeeOther)
}
