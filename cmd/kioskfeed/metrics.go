package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves the registry's series. With a token (metrics_token) it
// answers only "Authorization: Bearer <token>", and 401 invalid_token otherwise, because
// the series tell a stranger the fleet's size and the instance's load.
func metricsHandler(reg *prometheus.Registry, token string) http.Handler {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token)) // compared as hashes: the time says nothing of the length
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The scheme's case does not matter (RFC 7235 §2.1), as for every bearer here.
		got := httpx.Bearer(r)
		sum := sha256.Sum256([]byte(got))
		if got == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			httpx.WriteError(w, httpx.Errorf(httpx.CodeInvalidToken, "GET /metrics needs Authorization: Bearer <metrics_token>"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveMetrics serves GET /metrics (metrics_listen) on a listener of its own, apart
// from the public one, as servePprof does for profiles. It returns the address it
// listens on (the port chosen, for ":0").
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s for metrics_listen: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{
		Handler:           nosniff(httpx.JSONErrors(mux)),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics listener", slog.String("error", err.Error()))
		}
	}()
	bound = ln.Addr().String()
	log.Info("serving metrics", slog.String("metrics_listen", bound))
	return func() { _ = srv.Close() }, bound, nil
}

// nosniff is the one header of frontDoor that a listener of metrics also needs.
func nosniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
