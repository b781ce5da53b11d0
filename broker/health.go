package broker

import (
	"log/slog"
	"net/http"
)

// RegisterHealth adds GET /healthz (the process answers) and GET /readyz (NATS and
// JetStream answer; 503 with Retry-After otherwise, so a load balancer stops sending
// tablets to an instance that could not serve them).
func (b *Broker) RegisterHealth(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Ready(r.Context()); err != nil {
			b.log.Debug("not ready", slog.String("reason", err.Error()))
			WriteError(w, &Error{Code: CodeUnavailable, Message: "NATS or JetStream is not reachable", RetryAfter: 2})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}
