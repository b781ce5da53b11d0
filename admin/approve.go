package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// The dashboard's side of the reverse flow: /admin/approve?code=… is what a tablet's QR
// code opens. Looking a code up there counts like an approval through the API: a code
// that names no open request is audited and taken from the address's allowance.

// approveBody is the approve page: a code's open request and the form that decides it,
// or (Request nil) the form to type a code into.
type approveBody struct {
	Code    string // the normalised code, when it is well-formed
	Request *pairing.PairRequestView
	Form    pairing.Approval
	Feeds   []string
}

const viaDashboard = "the dashboard"

func (d *dashboard) approvePage(w http.ResponseWriter, r *http.Request, s adminSession) {
	raw := r.URL.Query().Get("code")
	if strings.TrimSpace(raw) == "" {
		d.renderApprove(w, http.StatusOK, d.base(s, "Approve a tablet", "devices"), approveBody{})
		return
	}
	view, err := d.a.p.LookupPairRequest(r.Context(), raw, d.a.addr.Of(r), viaDashboard)
	if err != nil {
		d.approveFailed(w, s, raw, err)
		return
	}
	d.renderApprove(w, http.StatusOK, d.base(s, "Approve a tablet", "devices"),
		approveBody{Code: pairing.NormalizeCode(raw), Request: &view, Form: pairing.Approval{Name: view.Name}})
}

// decide is POST /admin/approve: the approve page's form, with action approve or deny.
func (d *dashboard) decide(w http.ResponseWriter, r *http.Request, s adminSession) {
	a := d.a
	remote := a.addr.Of(r)
	raw := r.PostForm.Get("code")
	switch r.PostForm.Get("action") {
	case "deny":
		if err := a.p.DenyPairRequest(r.Context(), raw, remote, viaDashboard); err != nil {
			d.approveFailed(w, s, raw, err)
			return
		}
		http.Redirect(w, r, "/admin?notice=denied", http.StatusSeeOther)
	case "approve":
		ap := pairing.Approval{Feed: r.PostForm.Get("feed"), Name: r.PostForm.Get("name"), Replace: r.PostForm.Get("replace") != "", Tags: splitTags(r.PostForm.Get("tags"))}
		if err := ap.Check(); err != nil {
			// Show the request again with the problem; the lookup is not a guess when the
			// code is still open.
			view, lerr := a.p.LookupPairRequest(r.Context(), raw, remote, viaDashboard)
			if lerr != nil {
				d.approveFailed(w, s, raw, lerr)
				return
			}
			v := d.base(s, "Approve a tablet", "devices")
			v.Error = "The approval was not valid."
			if be := (*httpx.Error)(nil); errors.As(err, &be) {
				v.Error = be.Message
			}
			d.renderApprove(w, http.StatusBadRequest, v, approveBody{Code: pairing.NormalizeCode(raw), Request: &view, Form: ap})
			return
		}
		if _, err := a.p.ApprovePairRequest(r.Context(), raw, ap, remote, viaDashboard); err != nil {
			d.approveFailed(w, s, raw, err)
			return
		}
		http.Redirect(w, r, "/admin?notice=approved", http.StatusSeeOther)
	default:
		d.errorPage(w, http.StatusBadRequest, "Bad Request", "Choose Approve or Deny.")
	}
}

// approveFailed answers a lookup, approval or denial that found no open request with
// the code form and the reason; anything else (rate limit, NATS) with the error page.
func (d *dashboard) approveFailed(w http.ResponseWriter, s adminSession, raw string, err error) {
	if !errors.Is(err, pairing.ErrNoSuchRequest) {
		d.fail(w, err)
		return
	}
	v := d.base(s, "Approve a tablet", "devices")
	v.Error = "No tablet is waiting with that code. Check it against the tablet's screen: it may be mistyped, expired, or approved or denied already."
	d.renderApprove(w, http.StatusNotFound, v, approveBody{Code: pairing.NormalizeCode(raw)})
}

func (d *dashboard) renderApprove(w http.ResponseWriter, status int, v view, body approveBody) {
	body.Feeds = d.feeds()
	v.Body = body
	d.render(w, status, "approve", v)
}
