package admin

import (
	"net/http"
	"slices"

	"github.com/kioskfeed/kioskfeed/broker"
)

// The dashboard's audit log page.

type auditBody struct {
	Type    string
	Types   []broker.AuditType
	Records []broker.AuditRecord
	Limit   int
}

// auditPage lists the newest records, of one type when ?type= names one. The filter
// offers every type the system writes (broker.AuditTypes); any other well-formed type
// may be asked for in the URL, and finds nothing.
func (d *dashboard) auditPage(w http.ResponseWriter, r *http.Request, s adminSession) {
	v := d.base(s, "Audit log", "audit")
	typ := r.URL.Query().Get("type")
	types := broker.AuditTypes()
	if typ != "" && !broker.ValidAuditType(typ) {
		v.Error = "That is not an audit type; showing every type."
		typ = ""
	}
	if typ != "" && !slices.Contains(types, broker.AuditType(typ)) {
		types = append(types, broker.AuditType(typ))
	}
	recs, err := d.a.b.AuditList(r.Context(), typ, auditPageSize)
	if err != nil {
		d.fail(w, err)
		return
	}
	v.Body = auditBody{Type: typ, Types: types, Records: recs, Limit: auditPageSize}
	d.render(w, http.StatusOK, "audit", v)
}
