package broker

import (
	"log/slog"
	"net/http"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// RegisterHealth adds GET /healthz (the process answers) and GET /readyz (NATS and
// JetStream answer; 503 with Retry-After otherwise, so a load balancer stops sending
// tablets to an instance that could not serve them).
func (b *Broker) RegisterHealth(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Ready(r.Context()); err != nil {
			b.log.Debug("not ready", slog.String("reason", err.Error()))
			httpx.WriteError(w, &httpx.Error{Code: httpx.CodeUnavailable, Message: "NATS or JetStream is not reachable", RetryAfter: 2})
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}
